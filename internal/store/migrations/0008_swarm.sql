-- A Swarm environment deploys through one manager (its endpoint) instead
-- of registered hosts; empty for standalone environments.
ALTER TABLE environments ADD COLUMN swarm_manager TEXT NOT NULL DEFAULT '';
