-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION users_name_trim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.name := trim(NEW.name);
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER users_name_trim BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION users_name_trim();

-- +goose Down
DROP TRIGGER users_name_trim ON users;
DROP FUNCTION users_name_trim();
