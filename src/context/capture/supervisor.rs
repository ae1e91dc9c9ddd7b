//! Who supervises us: systemd (system or user manager), a container runtime, a terminal.

use serde::{Deserialize, Serialize};

use crate::sys::cgroup::{self, CgroupUnit, SystemdManager};

/// Who supervises this process, as far as local facts tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Supervisor {
    /// A systemd service; `unit` from `/proc/self/cgroup` when it names a `.service`.
    Systemd {
        /// System manager (PID 1) or a user manager.
        manager: SystemdManager,
        /// The service unit, e.g. `gateway.service`.
        unit: Option<String>,
    },
    /// A container runtime (Docker, Kubernetes, Podman, ...).
    Container {
        /// The runtime when recognisable: `kubernetes`, `docker`, `podman`, or the `container`
        /// environment variable's value.
        runtime: Option<String>,
    },
    /// Started from a terminal (we have a controlling tty).
    Terminal,
    /// None of the above could be recognised.
    None,
}

impl Supervisor {
    /// A short stable word for log lines: `systemd-system`, `systemd-user`, `container`,
    /// `terminal`, `none`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Systemd {
                manager: SystemdManager::System,
                ..
            } => "systemd-system",
            Self::Systemd {
                manager: SystemdManager::User,
                ..
            } => "systemd-user",
            Self::Container { .. } => "container",
            Self::Terminal => "terminal",
            Self::None => "none",
        }
    }
}

/// Environment facts, read once per capturer.
#[derive(Debug, Clone)]
pub(super) struct EnvFacts {
    pub(super) invocation_id: Option<String>,
    pub(super) journal_stream: Option<String>,
    pub(super) container: Option<String>,
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

impl EnvFacts {
    pub(super) fn read() -> Self {
        let container = env_nonempty("container")
            .or_else(|| env_nonempty("KUBERNETES_SERVICE_HOST").map(|_| "kubernetes".to_owned()));
        Self {
            invocation_id: env_nonempty("INVOCATION_ID"),
            journal_stream: env_nonempty("JOURNAL_STREAM"),
            container,
        }
    }
}

/// The local facts the verdict is drawn from.
pub(super) struct SupervisorFacts<'a> {
    pub(super) under_systemd: bool,
    pub(super) unit: Option<&'a CgroupUnit>,
    pub(super) ppid: u32,
    /// From [`container_runtime`]: `Some(runtime)` inside a container.
    pub(super) container: Option<&'a Option<String>>,
    pub(super) tty_nr: i64,
}

impl Supervisor {
    /// The verdict, in order of strength: systemd (by `INVOCATION_ID` or a `systemd` parent),
    /// a container runtime, a controlling terminal, none.
    pub(super) fn decide(f: &SupervisorFacts<'_>) -> Self {
        if f.under_systemd {
            let manager = match f.unit {
                Some(u) => u.manager,
                None if f.ppid == 1 => SystemdManager::System,
                None => SystemdManager::User,
            };
            return Self::Systemd {
                manager,
                unit: f.unit.map(|u| u.name.clone()),
            };
        }
        if let Some(runtime) = f.container {
            return Self::Container {
                runtime: runtime.clone(),
            };
        }
        if f.tty_nr != 0 {
            return Self::Terminal;
        }
        Self::None
    }
}

/// `Some(runtime)` when a container runtime runs us: the `container` (or Kubernetes) environment,
/// words only runtimes put in cgroup paths, or their marker files.
pub(super) fn container_runtime(
    env: &EnvFacts,
    cgroup_path: Option<&str>,
) -> Option<Option<String>> {
    if let Some(name) = &env.container {
        return Some(Some(name.clone()));
    }
    if let Some(path) = cgroup_path.filter(|p| cgroup::looks_like_container(p)) {
        let runtime = if path.contains("kubepods") {
            "kubernetes"
        } else if path.contains("libpod") {
            "podman"
        } else if path.contains("docker") {
            "docker"
        } else {
            return Some(None);
        };
        return Some(Some(runtime.to_owned()));
    }
    if std::path::Path::new("/.dockerenv").exists() {
        return Some(Some("docker".to_owned()));
    }
    if std::path::Path::new("/run/.containerenv").exists() {
        return Some(Some("podman".to_owned()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(
        unit: Option<&'a CgroupUnit>,
        container: Option<&'a Option<String>>,
    ) -> SupervisorFacts<'a> {
        SupervisorFacts {
            under_systemd: false,
            unit,
            ppid: 4242,
            container,
            tty_nr: 0,
        }
    }

    fn env(container: Option<&str>) -> EnvFacts {
        EnvFacts {
            invocation_id: None,
            journal_stream: None,
            container: container.map(str::to_owned),
        }
    }

    #[test]
    fn systemd_wins_and_names_the_unit_and_manager() {
        let unit = cgroup::unit_from_cgroup_path(
            "/user.slice/user-1000.slice/user@1000.service/app.slice/gw.service",
        );
        let docker = Some("docker".to_owned());
        let mut f = facts(unit.as_ref(), Some(&docker));
        f.under_systemd = true;
        assert_eq!(
            Supervisor::decide(&f),
            Supervisor::Systemd {
                manager: SystemdManager::User,
                unit: Some("gw.service".into())
            }
        );
        f.unit = None;
        f.ppid = 1;
        assert_eq!(
            Supervisor::decide(&f),
            Supervisor::Systemd {
                manager: SystemdManager::System,
                unit: None
            }
        );
    }

    #[test]
    fn containers_from_env_or_cgroup() {
        assert_eq!(
            container_runtime(&env(Some("podman")), None),
            Some(Some("podman".into()))
        );
        let k8s = container_runtime(
            &env(None),
            Some("/kubepods.slice/kubepods-besteffort.slice/cri-containerd-1.scope"),
        );
        assert_eq!(k8s, Some(Some("kubernetes".into())));
        let runtime = Some("kubernetes".to_owned());
        assert_eq!(
            Supervisor::decide(&facts(None, Some(&runtime))),
            Supervisor::Container { runtime }
        );
    }

    #[test]
    fn terminal_then_none() {
        let mut f = facts(None, None);
        f.tty_nr = 34816;
        assert_eq!(Supervisor::decide(&f), Supervisor::Terminal);
        f.tty_nr = 0;
        assert_eq!(Supervisor::decide(&f), Supervisor::None);
    }
}
