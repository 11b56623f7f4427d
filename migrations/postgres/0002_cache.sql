-- A decision the response cache answered names the decision whose answer it
-- served again; it has no attempts and teaches the policy nothing.
ALTER TABLE decisions ADD COLUMN cached_from TEXT;
