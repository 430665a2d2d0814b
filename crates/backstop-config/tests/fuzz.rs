//! The parser never panics, whatever the input, and every error it returns has a position.

use proptest::prelude::*;

const STARTER_LIKE: &str = backstop_config::STARTER;

fn check(text: &str) {
    if let Err(errors) = backstop_config::parse(text, "fuzz.yaml") {
        assert!(!errors.is_empty());
        for e in &errors {
            assert!(e.line >= 1 && e.col >= 1, "{e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn yaml_ish_strings_never_panic(text in "[ a-z0-9:{}\\[\\],&*!|>#'\"\\-\n]{0,200}") {
        check(&text);
    }

    #[test]
    fn mutated_starter_never_panics(cut in 0usize..2000, insert in "[ a-z0-9:{}\\[\\],&*!|>#'\"\\-\n]{0,12}") {
        let mut text: String = STARTER_LIKE.chars().take(cut).collect();
        text.push_str(&insert);
        text.extend(STARTER_LIKE.chars().skip(cut + insert.len() / 2));
        check(&text);
    }
}

#[test]
fn alias_bomb_is_rejected_not_expanded() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let errors = backstop_config::parse(&text, "bomb.yaml").expect_err("rejected");
    assert!(errors.to_string().contains("too many nodes"), "{errors}");
}

#[test]
fn deep_nesting_is_rejected() {
    let text = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let errors = backstop_config::parse(&text, "deep.yaml").expect_err("rejected");
    assert!(!errors.is_empty());
}
