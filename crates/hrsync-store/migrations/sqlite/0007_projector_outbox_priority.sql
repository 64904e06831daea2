-- Projector outbox: the publisher sends priority copies ahead of the rows
-- before them, found through this index without reading those rows.
-- projector_outbox.priority: 0 main topic only; 1 also the priority topic,
-- not sent there yet; 2 sent there, waiting for the main topic.
CREATE INDEX projector_outbox_unsent_priority ON projector_outbox (seq) WHERE priority = 1;
