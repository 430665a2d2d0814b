-- The chain's head is signed with a key kept outside the database (HMAC-SHA256 over its
-- sequence, hash and `broken`), so records rewritten with recomputed hashes, or a removed tail,
-- leave a head nobody without the key can sign. `broken` carries a break found earlier into
-- every later head, so appending after it cannot hide it.
ALTER TABLE audit_head ADD COLUMN mac TEXT;
ALTER TABLE audit_head ADD COLUMN broken TEXT;
