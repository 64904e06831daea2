-- Projector: leave a third of each projector_person page free, so that an
-- update that changes no indexed column (most do not: a title, a group, the
-- emitted state) can stay on its page as a HOT update, without new index
-- entries, and the page's old versions are pruned without a vacuum.
-- Affects pages written from now on.
ALTER TABLE projector_person SET (fillfactor = 70);
