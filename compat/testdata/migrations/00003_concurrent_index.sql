-- CREATE INDEX CONCURRENTLY cannot run in a transaction.
-- +goose NO TRANSACTION

-- +goose Up
CREATE INDEX CONCURRENTLY books_title ON books (title);

-- +goose Down
DROP INDEX CONCURRENTLY books_title;
