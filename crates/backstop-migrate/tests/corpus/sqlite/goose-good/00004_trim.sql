-- +goose Up
-- +goose StatementBegin
CREATE TRIGGER users_name_trim AFTER INSERT ON users BEGIN
    UPDATE users SET name = trim(name) WHERE id = NEW.id;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER users_name_trim;
