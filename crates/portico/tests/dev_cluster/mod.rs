//! `portico dev-cluster` for the CLI's tests: spawned, waited for, its kubeconfig, ready
//! file and a client; stopped by the test.

use std::path::PathBuf;
use std::time::Duration;

use portico_api::kube::config::{KubeConfigOptions, Kubeconfig};
use portico_api::kube::{self, Client};
use portico_testkit::Process;

/// A running `portico dev-cluster`.
pub(crate) struct DevCluster {
    pub(crate) process: Process,
    pub(crate) kubeconfig: PathBuf,
    /// The ready file's JSON (see `portico::dev_cluster`).
    pub(crate) info: serde_json::Value,
    _dir: tempfile::TempDir,
}

pub(crate) fn portico() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portico"))
}

impl DevCluster {
    /// Spawns it and waits for its ready line.
    pub(crate) async fn start() -> DevCluster {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let ready = dir.path().join("ready.json");
        let crds = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/gateway-api/crds/experimental"
        );
        let process = Process::spawn(
            portico(),
            [
                "dev-cluster",
                "--kubeconfig-out",
                kubeconfig.to_str().unwrap(),
                "--ready-file",
                ready.to_str().unwrap(),
                "--crds",
                crds,
            ],
        )
        .unwrap();
        process
            .wait_for_line("dev cluster ready", Duration::from_secs(180))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", process.output()));
        let info = serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
        DevCluster {
            process,
            kubeconfig,
            info,
            _dir: dir,
        }
    }

    /// The kubeconfig's path, for `--kubeconfig`.
    pub(crate) fn kc(&self) -> &str {
        self.kubeconfig.to_str().unwrap()
    }

    /// A client of its API server.
    pub(crate) async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .unwrap();
        Client::try_from(config).unwrap()
    }

    /// SIGKILLs one of its component processes (`portico-proxy`, ...).
    pub(crate) fn kill(&self, component: &str) {
        let pid = self.info["pids"][component].as_i64().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }

    pub(crate) async fn stop(self) {
        self.process.stop(Duration::from_secs(30)).await.unwrap();
    }
}
