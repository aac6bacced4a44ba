-- Who deployed each revision: a user, an API key or a ticket.
ALTER TABLE deployer_revisions ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
