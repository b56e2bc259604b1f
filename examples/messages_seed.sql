-- A small legacy inbox for examples/messages.toml (MariaDB/MySQL).
DROP DATABASE IF EXISTS tern_example;
CREATE DATABASE tern_example;
USE tern_example;
CREATE TABLE conversations (id BIGINT PRIMARY KEY, title VARCHAR(200) NOT NULL);
CREATE TABLE messages (
  id BIGINT NOT NULL PRIMARY KEY,
  member_id BIGINT NOT NULL,
  conversation_id BIGINT NOT NULL,
  sender_id BIGINT NOT NULL,
  body TEXT NOT NULL,
  is_unread TINYINT(1) NOT NULL,
  created_at DATETIME NOT NULL,
  updated_at DATETIME NOT NULL,
  KEY member_id (member_id)
);
INSERT INTO conversations
  SELECT seq, CONCAT('  Conversation ', seq, ' ') FROM seq_1_to_200;
-- Old members (low ids) own more messages: the hot-shard shape.
INSERT INTO messages
  SELECT seq,
         1 + FLOOR(POW(RAND(seq), 3) * 500),
         1 + (seq % 200),
         1 + (seq % 97),
         CONCAT(' message ', seq, ' ', REPEAT('x', seq % 40)),
         seq % 2,
         TIMESTAMP('2015-01-01') + INTERVAL seq MINUTE,
         TIMESTAMP('2015-01-01') + INTERVAL seq + 5 MINUTE
  FROM seq_1_to_20000;
