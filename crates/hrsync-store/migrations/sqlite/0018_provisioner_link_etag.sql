-- Provisioner: the version (entity tag) of each linked account as the app
-- last gave it, sent as If-Match on the next write where the app supports
-- ETags. NULL: not known (the next write is unconditional).
ALTER TABLE provisioner_link ADD COLUMN etag TEXT;
