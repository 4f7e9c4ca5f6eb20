//! A single-node Slurm cluster for the `prism ablate --executor slurm` test: Debian's
//! `slurmctld`, `slurmd`, `slurm-client` and `munge` installed with apt-get when missing (root
//! only), a cluster config under `$PRISM_ENV/slurm` (its own ports, state and logs, so it never
//! touches a site's Slurm), and `munged`, `slurmctld` and `slurmd` started when they do not
//! answer. Tests find it through `SLURM_CONF`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const PACKAGES: [&str; 4] = ["slurmctld", "slurmd", "slurm-client", "munge"];
/// Ports away from Slurm's defaults (6817, 6818), so a site's daemons do not collide with ours.
const CTLD_PORT: u16 = 6917;
const SLURMD_PORT: u16 = 6918;

/// The config file of the cluster under `env_dir`.
pub fn conf_path(env_dir: &Path) -> PathBuf {
    env_dir.join("slurm/slurm.conf")
}

/// Installs, configures and starts the cluster; returns its `slurm.conf`.
pub fn provision(env_dir: &Path) -> Result<PathBuf> {
    install()?;
    let dir = env_dir.join("slurm");
    for sub in ["state", "spool", "log"] {
        fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let conf = conf_path(env_dir);
    let host = output(Command::new("hostname").arg("-s"))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let text = config(&dir, host.trim(), cpus);
    if fs::read_to_string(&conf).ok().as_deref() != Some(text.as_str()) {
        fs::write(&conf, &text).with_context(|| format!("writing {}", conf.display()))?;
    }
    start_munge()?;
    if !controller_up(&conf) {
        eprintln!("xtask: starting slurmctld and slurmd ({})", conf.display());
        for daemon in ["slurmctld", "slurmd"] {
            let status = Command::new(resolve(daemon))
                .env("SLURM_CONF", &conf)
                .status()
                .with_context(|| format!("starting {daemon}"))?;
            if !status.success() {
                bail!("{daemon} did not start; see {}", dir.join("log").display());
            }
        }
    }
    wait_for_idle_node(&conf, host.trim(), &dir)?;
    Ok(conf)
}

fn config(dir: &Path, host: &str, cpus: usize) -> String {
    let d = dir.display();
    format!(
        "# Written by cargo xtask (xtask/src/slurm.rs): a one-node cluster for prism's tests.\n\
         ClusterName=prism-test\n\
         SlurmctldHost={host}\n\
         SlurmUser=root\n\
         SlurmdUser=root\n\
         AuthType=auth/munge\n\
         CredType=cred/munge\n\
         ProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\n\
         JobAcctGatherType=jobacct_gather/none\n\
         SchedulerType=sched/backfill\n\
         SelectType=select/cons_tres\n\
         SelectTypeParameters=CR_Core\n\
         StateSaveLocation={d}/state\n\
         SlurmdSpoolDir={d}/spool\n\
         SlurmctldPidFile={d}/slurmctld.pid\n\
         SlurmdPidFile={d}/slurmd.pid\n\
         SlurmctldLogFile={d}/log/slurmctld.log\n\
         SlurmdLogFile={d}/log/slurmd.log\n\
         SlurmctldPort={CTLD_PORT}\n\
         SlurmdPort={SLURMD_PORT}\n\
         ReturnToService=2\n\
         MpiDefault=none\n\
         NodeName={host} CPUs={cpus} State=UNKNOWN\n\
         PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP\n"
    )
}

/// apt-get installs the packages whose programs are missing (updating the index once if the
/// first attempt fails).
fn install() -> Result<()> {
    let have = ["sbatch", "squeue", "slurmctld", "slurmd", "munged"]
        .iter()
        .all(|p| which(p));
    if have {
        return Ok(());
    }
    if output(Command::new("id").arg("-u"))?.trim() != "0" {
        bail!(
            "Slurm is not installed and installing it needs root: apt-get install {}",
            PACKAGES.join(" ")
        );
    }
    eprintln!("xtask: installing {}", PACKAGES.join(" "));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
    };
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(PACKAGES);
    if apt(&install).map(|s| s.success()).unwrap_or(false) {
        return Ok(());
    }
    crate::run(
        Command::new("apt-get")
            .arg("update")
            .stdout(Stdio::null())
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get update",
    )?;
    crate::run(
        Command::new("apt-get")
            .args(&install)
            .stdout(Stdio::null())
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install slurm",
    )
}

/// Starts munged (as root it needs `--force`) unless a credential round-trips already.
fn start_munge() -> Result<()> {
    if munge_works() {
        return Ok(());
    }
    let key = Path::new("/etc/munge/munge.key");
    if !key.is_file() {
        crate::run(
            Command::new(resolve("mungekey")).arg("--create"),
            "mungekey --create",
        )?;
    }
    fs::create_dir_all("/run/munge").context("creating /run/munge")?;
    crate::run(Command::new(resolve("munged")).arg("--force"), "munged")?;
    let started = Instant::now();
    while !munge_works() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("munged started but credentials do not round-trip (munge -n | unmunge)");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn munge_works() -> bool {
    let Ok(cred) = Command::new(resolve("munge"))
        .arg("-n")
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    if !cred.status.success() {
        return false;
    }
    let Ok(mut child) = Command::new(resolve("unmunge"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        let _ = stdin.write_all(&cred.stdout);
    }
    child.wait().map(|s| s.success()).unwrap_or(false)
}

fn controller_up(conf: &Path) -> bool {
    Command::new(resolve("scontrol"))
        .arg("ping")
        .env("SLURM_CONF", conf)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("is UP"))
        .unwrap_or(false)
}

/// Waits (up to a minute) for the node to take jobs, resuming it if an earlier run left it down.
fn wait_for_idle_node(conf: &Path, host: &str, dir: &Path) -> Result<()> {
    let started = Instant::now();
    loop {
        let state = Command::new(resolve("sinfo"))
            .args(["-h", "-N", "-o", "%t", "-n", host])
            .env("SLURM_CONF", conf)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        match state.trim_end_matches(['*', '~', '#', '!', '%', '$', '@', '^', '-']) {
            "idle" | "mix" | "alloc" => return Ok(()),
            "down" | "drain" | "drng" | "fail" => {
                let _ = Command::new(resolve("scontrol"))
                    .args(["update", &format!("nodename={host}"), "state=resume"])
                    .env("SLURM_CONF", conf)
                    .status();
            }
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the Slurm node {host} is {state:?}, not idle; see {}",
                dir.join("log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn which(program: &str) -> bool {
    resolve(program).is_absolute()
}

/// `program`'s path on PATH or in the sbin folders (daemons live there, and a user's PATH may
/// not have them); the bare name when not found.
fn resolve(program: &str) -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
