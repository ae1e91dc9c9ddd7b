//! `/proc/<pid>/cgroup` parsing: which systemd unit (and which manager) runs us.

/// Which systemd instance manages a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemdManager {
    /// PID 1, the system manager (`systemctl`).
    System,
    /// A per-user manager, `user@UID.service` (`systemctl --user`).
    User,
}

/// A systemd service unit found in a cgroup path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CgroupUnit {
    /// The unit name, e.g. `gateway.service`.
    pub(crate) name: String,
    /// The manager that owns it, decided by whether the path runs through `user@N.service`.
    pub(crate) manager: SystemdManager,
}

/// The path systemd files us under, from `/proc/<pid>/cgroup` text: the unified (v2) path, or
/// the `name=systemd` v1 hierarchy's when the unified one is just `/`. Hybrid hierarchies (and
/// some container hosts) leave the unified path at the root while systemd's own v1 hierarchy
/// names the unit.
pub(crate) fn systemd_cgroup_path(text: &str) -> Option<&str> {
    let (mut v2, mut v1) = (None, None);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        } else if controllers == "name=systemd" {
            v1 = Some(path);
        }
    }
    match (v2, v1) {
        (Some("/" | ""), Some(legacy)) => Some(legacy),
        (Some(unified), _) => Some(unified),
        (None, legacy) => legacy,
    }
}

fn is_user_manager(component: &str) -> bool {
    component
        .strip_prefix("user@")
        .and_then(|rest| rest.strip_suffix(".service"))
        .is_some_and(|uid| !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit()))
}

/// The service unit a cgroup path belongs to.
///
/// The deepest `.service` or `.scope` component decides: a `.scope` (a login session, a
/// `systemd-run --scope`, a container) is not a service of ours, nor is `user@N.service` (the user
/// manager itself). The manager is `User` when the path runs through `user@N.service`.
pub(crate) fn unit_from_cgroup_path(path: &str) -> Option<CgroupUnit> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let idx = components
        .iter()
        .rposition(|c| c.ends_with(".service") || c.ends_with(".scope"))?;
    let unit = components[idx];
    if unit.ends_with(".scope") || is_user_manager(unit) || unit.len() <= ".service".len() {
        return None;
    }
    let manager = if components[..idx].iter().any(|c| is_user_manager(c)) {
        SystemdManager::User
    } else {
        SystemdManager::System
    };
    Some(CgroupUnit {
        name: unit.to_owned(),
        manager,
    })
}

/// The service unit from whole `/proc/<pid>/cgroup` text.
pub(crate) fn unit_from_cgroup(text: &str) -> Option<CgroupUnit> {
    unit_from_cgroup_path(systemd_cgroup_path(text)?)
}

/// Words in a cgroup path that only container runtimes create.
pub(crate) fn looks_like_container(path: &str) -> bool {
    [
        "docker",
        "kubepods",
        "containerd",
        "libpod",
        "crio",
        "lxc",
        "garden",
    ]
    .iter()
    .any(|w| path.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(text: &str) -> Option<(String, SystemdManager)> {
        unit_from_cgroup(text).map(|u| (u.name, u.manager))
    }

    #[test]
    fn system_service_v2() {
        assert_eq!(
            unit("0::/system.slice/gateway.service\n"),
            Some(("gateway.service".into(), SystemdManager::System))
        );
    }

    #[test]
    fn delegated_subgroup_still_names_the_service() {
        assert_eq!(
            unit("0::/system.slice/gateway.service/workers\n"),
            Some(("gateway.service".into(), SystemdManager::System))
        );
    }

    #[test]
    fn user_service_is_managed_by_the_user_manager() {
        assert_eq!(
            unit("0::/user.slice/user-1000.slice/user@1000.service/app.slice/gw.service\n"),
            Some(("gw.service".into(), SystemdManager::User))
        );
    }

    #[test]
    fn scopes_and_the_user_manager_are_not_our_unit() {
        assert_eq!(
            unit("0::/user.slice/user-1000.slice/session-3.scope\n"),
            None
        );
        assert_eq!(
            unit("0::/user.slice/user-1000.slice/user@1000.service/init.scope\n"),
            None
        );
        assert_eq!(
            unit("0::/user.slice/user-1000.slice/user@1000.service\n"),
            None
        );
        assert_eq!(unit("0::/system.slice/docker-0123abcd.scope\n"), None);
        assert_eq!(unit("0::/\n"), None);
        assert_eq!(unit("0::/system.slice/.service\n"), None);
    }

    #[test]
    fn v1_uses_the_name_systemd_hierarchy() {
        let text = "12:pids:/user.slice\n1:name=systemd:/system.slice/legacy.service\n";
        assert_eq!(
            unit(text),
            Some(("legacy.service".into(), SystemdManager::System))
        );
    }

    #[test]
    fn hybrid_hierarchy_with_an_empty_unified_path_uses_name_systemd() {
        let text = "9:name=systemd:/system.slice/gw.service\n4:memory:/x\n0::/\n";
        assert_eq!(
            unit(text),
            Some(("gw.service".into(), SystemdManager::System))
        );
        // When both name a unit, the unified one wins.
        let both = "1:name=systemd:/system.slice/old.service\n0::/system.slice/new.service\n";
        assert_eq!(
            unit(both),
            Some(("new.service".into(), SystemdManager::System))
        );
        // A scope in the unified hierarchy is not overridden by v1.
        let scope = "1:name=systemd:/system.slice/a.service\n0::/user.slice/session-1.scope\n";
        assert_eq!(unit(scope), None);
    }

    #[test]
    fn malformed_text_is_none() {
        assert_eq!(unit(""), None);
        assert_eq!(unit("garbage\n\0\u{fffd}"), None);
        assert_eq!(unit("0:"), None);
    }

    #[test]
    fn container_paths() {
        assert!(looks_like_container(
            "/kubepods.slice/kubepods-burstable.slice/x"
        ));
        assert!(looks_like_container("/docker/0123"));
        assert!(!looks_like_container("/system.slice/gateway.service"));
    }
}
