-- +goose Up
CREATE TABLE books (
    id        bigserial PRIMARY KEY,
    author_id bigint NOT NULL REFERENCES authors (id),
    title     text NOT NULL,
    updated   timestamptz
);
CREATE INDEX books_author_id ON books (author_id);

-- +goose StatementBegin
CREATE FUNCTION books_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated := now();
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER books_touch BEFORE INSERT OR UPDATE ON books
    FOR EACH ROW EXECUTE FUNCTION books_touch();

-- +goose Down
DROP TABLE books;
DROP FUNCTION books_touch();
