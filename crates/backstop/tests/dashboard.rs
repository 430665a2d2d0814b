//! The web dashboard in a real browser (headless Chromium over WebDriver): a person signs in
//! with a token, sees why a bad release was rolled back (charts of canary against baseline
//! with the decision marked, the judge's numbers, the steps), follows the recovery's journal
//! and the audit log, and aborts a running rollout through a confirmation, with the roles and
//! the audit trail of the API. Screenshots of the main pages are saved under
//! `target/tmp/dashboard/` (the README's pictures come from there).

use std::io::{Read, Write};
use std::path::PathBuf;

use backstop_testkit::servers::Browser;
use backstop_testkit::{Daemon, Traffic};

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

/// Signs in on the sign-in page; `true` when the browser left it (the token was taken).
fn sign_in(b: &Browser, token: &str) -> bool {
    let field = b.find("input[name=token]");
    b.type_into(&field, token);
    b.click_to_load(&b.find("form.login button"));
    !b.url().contains("/login")
}

fn sign_out(b: &Browser) {
    b.click_to_load(&b.find("form.signout button"));
    assert!(b.url().contains("/login"), "{}", b.url());
}

/// A form post made outside the browser, with the browser's session cookie: the status.
fn forged_post(d: &Daemon, path: &str, cookie: &str, form: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.api_port())).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: backstop_session={cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap()
}

#[test]
fn a_person_sees_why_a_release_was_rolled_back_and_aborts_one_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    // A long second step keeps v4 running while the browser acts on it.
    let d = Daemon::start_shop(
        dir.path(),
        "[{weight: 10, for: 3s}, {weight: 50, for: 90s}, {weight: 100}]",
    );
    d.register("v1", 0.0);
    d.register("v3", 0.2);
    d.register("v4", 0.0);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let traffic = Traffic::start(d.proxy_port, 80.0);
    let v3 = d.rollout_wait("v3", 1);
    assert_eq!(v3["rollout"]["phase"], "recovered", "{v3:#}");
    let v3_id = v3["rollout"]["id"].as_str().unwrap();
    let admin = std::fs::read_to_string(d.state_dir.join("admin.token")).unwrap();
    let viewer = d.cli_json(
        &["token", "create", "--name", "vera", "--role", "viewer"],
        0,
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let releaser = d.cli_json(
        &["token", "create", "--name", "alice", "--role", "releaser"],
        0,
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let b = Browser::start(1280, 900);
    let base = &d.api;

    // Signed out, a page leads to sign-in; a wrong token is refused with the reason.
    b.goto(&format!("{base}/rollouts/{v3_id}"));
    assert!(b.url().contains("/login?next="), "{}", b.url());
    assert!(!sign_in(&b, "bst_not_a_token"));
    assert!(
        b.text(&b.find(".error")).contains("refused"),
        "{}",
        b.source()
    );
    assert!(sign_in(&b, admin.trim()));
    assert!(
        b.url().ends_with(&format!("/rollouts/{v3_id}")),
        "{}",
        b.url()
    );

    // The bad release's page: the decision in words, the charts, the judge's numbers.
    let sentence = b.text(&b.find("section.decision .sentence"));
    assert!(sentence.contains("shop@v3 was rolled back"), "{sentence}");
    let chart = b.find("svg[data-signal=error_ratio]");
    let canary = b.find("svg[data-signal=error_ratio] polyline[data-series=canary]");
    let baseline = b.find("svg[data-signal=error_ratio] polyline[data-series=baseline]");
    let points = |e| b.attr(e, "data-points").unwrap().parse::<usize>().unwrap();
    assert!(points(&canary) > 0 && points(&baseline) > 0);
    // The decision marker sits at the verdict's time on the chart's scale.
    let canary_started = v3["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "canary.started")
        .unwrap()["at_ms"]
        .as_i64()
        .unwrap();
    let verdict_at = v3["timeline"]["verdict_at_ms"].as_i64().unwrap();
    let expected_t = (verdict_at - canary_started) as f64 / 1000.0;
    let marker = b.find("svg[data-signal=error_ratio] line.decision");
    let t: f64 = b.attr(&marker, "data-t").unwrap().parse().unwrap();
    assert!(
        (t - expected_t).abs() < 0.01,
        "marker at {t}, verdict at {expected_t}"
    );
    let num = |name: &str| -> f64 { b.attr(&chart, name).unwrap().parse().unwrap() };
    let x1: f64 = b.attr(&marker, "x1").unwrap().parse().unwrap();
    let expected_x = num("data-plot-left") + t / num("data-x-max") * num("data-plot-width");
    assert!(
        (x1 - expected_x).abs() < 0.1,
        "marker at x={x1}, expected {expected_x}"
    );
    let numbers = b.text(&b.find("#signal-error_ratio .numbers"));
    assert!(
        numbers.contains("fail") && numbers.contains("canary "),
        "{numbers}"
    );
    let steps = b.text(&b.find("ol.timeline"));
    assert!(
        steps.contains("recovery step shift_traffic done"),
        "{steps}"
    );
    assert!(
        b.find_all("meta[http-equiv=refresh]").is_empty(),
        "a finished rollout does not reload itself"
    );
    assert!(
        b.find_all("#action-abort").is_empty(),
        "nothing to abort on a finished rollout"
    );
    b.screenshot(&shots().join("rollout-bad-release.png"));

    // Its recovery: the journaled steps with attempts and timings.
    b.click_to_load(&b.find("section a[href^='/recoveries/']"));
    assert!(b.url().contains("/recoveries/"), "{}", b.url());
    let journal = b.text(&b.find("table.steps"));
    for step in [
        "wait_healthy",
        "shift_traffic",
        "stop_instance",
        "mark_release_bad",
    ] {
        assert!(journal.contains(step), "{step} in {journal}");
    }
    assert_eq!(b.find_all("table.steps tbody tr").len(), 6);
    b.screenshot(&shots().join("recovery.png"));

    // The overview says what runs where; the audit log verifies.
    b.goto(&format!("{base}/"));
    let services = b.text(&b.find("table.services"));
    assert!(
        services.contains("shop") && services.contains("shop@v1"),
        "{services}"
    );
    b.screenshot(&shots().join("overview.png"));
    b.goto(&format!("{base}/audit"));
    assert!(
        b.text(&b.find("#audit-status")).contains("verifies"),
        "{}",
        b.source()
    );
    assert!(b.find_all("table.audit tbody tr").len() > 3);
    b.screenshot(&shots().join("audit.png"));
    for page in ["/rollouts", "/incidents", "/runbooks", "/scorecards"] {
        b.goto(&format!("{base}{page}"));
        assert!(!b.text(&b.find("h1")).is_empty(), "{page}");
        assert!(b.find_all(".error").is_empty(), "{page}: {}", b.source());
    }

    // On a phone-sized screen nothing needs sideways scrolling.
    b.set_viewport(390, 844);
    for page in [
        format!("/rollouts/{v3_id}"),
        "/".into(),
        "/audit".into(),
        "/rollouts".into(),
    ] {
        b.goto(&format!("{base}{page}"));
        assert!(!b.overflows_sideways(), "{page} is wider than a phone");
    }
    b.goto(&format!("{base}/rollouts/{v3_id}"));
    b.screenshot(&shots().join("rollout-phone.png"));
    b.set_viewport(1280, 900);

    // A running rollout reloads itself and offers abort, behind a confirmation.
    let v4_id = d.rollout_progressing("v4");
    b.goto(&format!("{base}/rollouts/{v4_id}"));
    assert_eq!(b.find_all("meta[http-equiv=refresh]").len(), 1);

    // A form that did not come from the dashboard is refused, and changes nothing.
    let cookie = b.cookie("backstop_session").expect("a session cookie");
    let status = forged_post(
        &d,
        &format!("/rollouts/{v4_id}/abort"),
        &cookie,
        "csrf=forged&reason=x",
    );
    assert_eq!(status, 403);
    assert_eq!(d.rollout(&v4_id)["rollout"]["phase"], "progressing");

    // A viewer sees the page, but the API's roles refuse the abort: the page says which role.
    sign_out(&b);
    assert!(sign_in(&b, &viewer));
    b.goto(&format!("{base}/rollouts/{v4_id}"));
    b.click_to_load(&b.find("#action-abort"));
    b.type_into(&b.find("textarea[name=reason]"), "trying");
    b.click_to_load(&b.find("form.confirm button[type=submit]"));
    let refusal = b.text(&b.find(".error"));
    assert!(refusal.contains("releaser"), "{refusal}");
    assert_eq!(d.rollout(&v4_id)["rollout"]["phase"], "progressing");

    // A releaser aborts it: confirmation, reason, done; the audit names them.
    sign_out(&b);
    assert!(sign_in(&b, &releaser));
    b.goto(&format!("{base}/rollouts/{v4_id}"));
    b.click_to_load(&b.find("#action-abort"));
    assert!(
        b.text(&b.find("form.confirm"))
            .contains("restores the last known good"),
        "the confirmation says what abort does"
    );
    b.type_into(
        &b.find("textarea[name=reason]"),
        "customers report slow checkout",
    );
    b.click_to_load(&b.find("form.confirm button[type=submit]"));
    assert!(
        b.text(&b.find(".notice")).contains("Aborted"),
        "{}",
        b.source()
    );
    let aborted = d.wait_rollout(&v4_id, "v4 aborted", |r| {
        r["rollout"]["phase"] != "progressing"
    });
    assert_ne!(aborted["rollout"]["phase"], "promoted", "{aborted:#}");
    let audit = d.cli_json(&["audit", "list"], 0);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["actor"] == "token:alice"
                && r["target"].as_str().unwrap_or("").contains(&v4_id)),
        "the abort is audited as alice's: {audit:#}"
    );
    traffic.stop();
}
