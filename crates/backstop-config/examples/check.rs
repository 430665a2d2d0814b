//! `cargo run -p backstop-config --example check -- FILE` (or `schema`): prints the result.
fn main() {
    let arg = std::env::args().nth(1).unwrap_or_default();
    if arg == "schema" {
        println!(
            "{}",
            serde_json::to_string_pretty(&backstop_config::schema()).unwrap_or_default()
        );
        return;
    }
    match backstop_config::load(std::path::Path::new(&arg)) {
        Ok(c) => print!("{}", c.to_yaml_effective()),
        Err(e) => println!("{e}"),
    }
}
