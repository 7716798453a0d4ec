-- Avatars stored before every URL was checked (plyrd.urls): drop any that is not a plain https URL, or that holds a
-- character that could break out of an HTML attribute or a URL (quotes, angle brackets, backslash, backtick,
-- whitespace, control characters). The person sets a new one; nothing else refers to the old value.
UPDATE users SET avatar_url = NULL
WHERE avatar_url IS NOT NULL
  AND (substr(avatar_url, 1, 8) <> 'https://'
       OR avatar_url GLOB ('*[' || char(1) || '-' || char(32) || char(34) || char(39) || char(60) || char(62)
                           || char(92) || char(96) || char(127) || ']*'));
