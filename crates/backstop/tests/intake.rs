//! Bounded artifact intake: `release create --file /dev/zero` used to copy forever (7 GB before
//! it was stopped), never answer, and keep SIGTERM from stopping the daemon; a FIFO hung it the
//! same way. Both are refused at once naming the file, and the daemon stops when told.

use backstop_testkit::{Daemon, make_fifo};

#[test]
fn devices_and_fifos_are_refused_at_once_and_the_daemon_still_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_shop(dir.path(), "[{weight: 100}]");
    let fifo = dir.path().join("artifact.pipe");
    make_fifo(&fifo);
    for (file, what) in [
        ("/dev/zero", "a device"),
        (fifo.to_str().unwrap(), "a FIFO"),
    ] {
        let out = d.cli(&[
            "release",
            "create",
            "shop",
            "--version",
            "v1",
            "--file",
            file,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(file) && stderr.contains(what), "{stderr}");
        assert!(stderr.contains("/file"), "names the field: {stderr}");
    }
    let releases = d.cli_json(&["release", "list"], 0);
    assert_eq!(releases.as_array().unwrap().len(), 0, "nothing registered");
    d.stop(); // panics unless SIGTERM stops the daemon
}
