//! One state folder has one daemon: a second `backstop serve` on a folder in use is refused at
//! start, on other ports too, naming the holder, and the first goes on serving. (Two daemons on
//! one folder used to both drive the same rollouts and run every recovery step twice.)

use std::process::Command;
use std::time::{Duration, Instant};

use backstop_testkit::{Daemon, backstop_bin, free_port, http_get, patience, shop_config};

#[test]
fn a_second_daemon_on_a_state_folder_in_use_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_shop(dir.path(), "[{weight: 100}]");
    let (state, proxy) = (d.state_dir.clone(), d.proxy_port);
    d.register("v1", 0.0);
    d.rollout_wait("v1", 0);
    let holder_pid = d.child.as_ref().unwrap().id();

    // Same state folder, its own API port and its own proxy port: nothing collides but the
    // folder.
    let other_config = dir.path().join("other.yaml");
    let other_proxy = free_port();
    std::fs::write(&other_config, shop_config(other_proxy, "[{weight: 100}]")).unwrap();
    let mut second = Command::new(backstop_bin())
        .args(["serve", "--config"])
        .arg(&other_config)
        .arg("--state-dir")
        .arg(&state)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + patience();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            second.kill().unwrap();
            second.wait().unwrap();
            panic!("the second daemon on a state folder in use was not refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(second.stderr.take().unwrap()).unwrap();
    assert!(!status.success(), "refused with a nonzero exit: {status}");
    assert!(
        stderr.contains("in use by another Backstop daemon"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {holder_pid}")),
        "names the holder: {stderr}"
    );
    assert!(stderr.contains(&d.api), "names the holder's API: {stderr}");

    // The first is unaffected: it still serves users and answers its API.
    let answer = http_get(proxy, "/").expect("the proxy answers");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let list = d.cli_json(&["rollout", "list"], 0);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", other_proxy)).is_err(),
        "the refused daemon opened no proxy"
    );
}
