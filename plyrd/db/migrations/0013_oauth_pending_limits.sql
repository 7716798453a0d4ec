-- Pending OAuth sign-ins are capped (plyrd.auth.service: PENDING_MAX in all, PENDING_PER_ADDRESS per client
-- address) and expired rows are deleted at each start, so each row remembers the address that started it (the
-- rate-limit key: an IPv4 address or an IPv6 /64), and both lookups are indexed. Rows live at most ten minutes.

ALTER TABLE oauth_pending ADD COLUMN client TEXT;  -- NULL: started without a known address

CREATE INDEX oauth_pending_expiry ON oauth_pending(expires_at);
CREATE INDEX oauth_pending_client ON oauth_pending(client);
