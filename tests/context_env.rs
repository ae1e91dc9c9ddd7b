//! Environment-driven facts. The environment is process-global, so this file holds ONE test
//! that sets and clears variables in sequence (no other test in this binary can race it).

use shutdown_forensics::context::{ShutdownContext, Supervisor};
use shutdown_forensics::systemd::SystemdManager;

#[test]
fn systemd_and_container_facts_come_from_the_environment() {
    // seed: under_systemd flag uses INVOCATION_ID
    std::env::set_var("INVOCATION_ID", "abc123");
    std::env::set_var("JOURNAL_STREAM", "8:12345");
    let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
    assert!(ctx.under_systemd);
    assert_eq!(ctx.systemd_invocation_id.as_deref(), Some("abc123"));
    assert_eq!(ctx.systemd_journal_stream.as_deref(), Some("8:12345"));
    assert!(
        matches!(ctx.supervisor, Supervisor::Systemd { .. }),
        "{:?}",
        ctx.supervisor
    );
    assert!(ctx.to_log_line().contains("under_systemd=true"));
    // Outside a .service cgroup (as here) there is no unit to name; the manager is still guessed.
    if ctx.systemd_unit.is_none() {
        let expected = if ctx.ppid == 1 {
            SystemdManager::System
        } else {
            SystemdManager::User
        };
        assert_eq!(
            ctx.supervisor,
            Supervisor::Systemd {
                manager: expected,
                unit: None
            }
        );
    }

    // An empty INVOCATION_ID is no systemd either.
    std::env::set_var("INVOCATION_ID", "");
    std::env::remove_var("JOURNAL_STREAM");
    let parent_is_systemd =
        ShutdownContext::capture(None).parent.name.as_deref() == Some("systemd");
    if !parent_is_systemd {
        // seed: under_systemd is false without INVOCATION_ID and with a normal parent
        let ctx = ShutdownContext::capture(Some(libc::SIGTERM));
        assert!(!ctx.under_systemd);
        assert_eq!(ctx.systemd_invocation_id, None);
        assert!(!matches!(ctx.supervisor, Supervisor::Systemd { .. }));

        // The container runtime announces itself through `container=`.
        std::env::set_var("container", "podman");
        let ctx = ShutdownContext::capture(None);
        assert_eq!(
            ctx.supervisor,
            Supervisor::Container {
                runtime: Some("podman".into())
            }
        );
        assert!(ctx.to_log_line().contains("supervisor=container"));
        std::env::remove_var("container");
    }
    std::env::remove_var("INVOCATION_ID");
}
