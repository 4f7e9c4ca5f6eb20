//! Provisioning: Python environment, ONNX Runtime library, real event recordings.
//!
//! Idempotent: each step writes a stamp and is skipped when the stamp matches what is asked for.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Python packages of the test environment, pinned so every machine validates against the same
/// references. onnxruntime also supplies `libonnxruntime.so` for the `ort` crate.
const PYTHON_REQUIREMENTS: &[&str] = &[
    "numpy==2.4.6",
    "h5py==3.16.0",
    "onnx==1.23.2",
    "onnxruntime==1.31.1",
    "pycocotools==2.0.11",
    "evlib==0.13.2",
    // Triton's Python clients, run against `prism serve` in the server tests.
    "tritonclient[http,grpc]==2.73.0",
];

/// The ONNX Runtime version the `ort` crate is built against (`api-31`).
const ORT_VERSION: &str = "1.31.1";

/// Real recordings in the faery 0.7.1 source package (`tests/data/`), with their sha256.
const FAERY_VERSION: &str = "0.7.1";
const FAERY_FILES: &[(&str, &str)] = &[
    (
        "gen4.dat",
        "9d77a38da198c44fc4e79695ea93715c05ee0303bb2bc30226d91243c200624f",
    ),
    (
        "evt3.raw",
        "8eca19cd8f0580ae939490484a023d858192a4c102b6649d8f5e19a62cb77ad3",
    ),
    (
        "evt2.raw",
        "e84afbecdc07d2910ae846a4ae0ee246f5b9c97a53816c637d4f85c023d7c234",
    ),
    (
        "davis346.aedat4",
        "b383462d72122c69fd96ebf095c384e3f1a2f092cc1b2681be52ebc1d260cf8a",
    ),
];

/// Where everything provisioned lives.
pub struct Env {
    pub root: PathBuf,
    pub dir: PathBuf,
}

impl Env {
    /// `$PRISM_ENV` if set, else `<root>/target/prism-env`.
    pub fn at(root: &Path) -> Self {
        let dir = std::env::var_os("PRISM_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/prism-env"));
        Self {
            root: root.to_path_buf(),
            dir,
        }
    }

    fn venv(&self) -> PathBuf {
        self.dir.join("venv")
    }

    pub fn python(&self) -> PathBuf {
        self.venv().join("bin/python")
    }

    /// The environment variables tests and benchmarks read.
    pub fn variables(&self) -> Result<Vec<(&'static str, PathBuf)>> {
        let mut vars = vec![("PRISM_ENV", self.dir.clone())];
        if let Some(lib) = self.ort_library()? {
            vars.push(("ORT_DYLIB_PATH", lib));
        }
        let slurm = crate::slurm::conf_path(&self.dir);
        if slurm.is_file() {
            vars.push(("SLURM_CONF", slurm));
        }
        Ok(vars)
    }

    pub fn provision(&self) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        self.provision_python()?;
        self.provision_faery()?;
        match self.ort_library()? {
            Some(lib) => eprintln!("xtask: ONNX Runtime library {}", lib.display()),
            None => bail!("the onnxruntime wheel holds no libonnxruntime.so.{ORT_VERSION}"),
        }
        Ok(())
    }

    fn provision_python(&self) -> Result<()> {
        let stamp = self.venv().join(".prism-requirements");
        let wanted = PYTHON_REQUIREMENTS.join("\n");
        if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
            && self.python().exists()
        {
            return Ok(());
        }
        eprintln!(
            "xtask: creating the Python environment in {}",
            self.venv().display()
        );
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        crate::run(
            Command::new(&python).arg("-m").arg("venv").arg(self.venv()),
            "python3 -m venv",
        )?;
        crate::run(
            Command::new(self.python())
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(PYTHON_REQUIREMENTS),
            "pip install",
        )?;
        fs::write(&stamp, wanted).context("writing the requirements stamp")?;
        Ok(())
    }

    /// Downloads the faery source package with pip and extracts its recordings, checked by sha256.
    fn provision_faery(&self) -> Result<()> {
        let out = self.dir.join("data/faery");
        let all_present = FAERY_FILES.iter().all(|(name, sha)| {
            sha256(&self.python(), &out.join(name)).ok().as_deref() == Some(*sha)
        });
        if all_present {
            return Ok(());
        }
        eprintln!("xtask: fetching the faery {FAERY_VERSION} source package for its recordings");
        let downloads = self.dir.join("downloads");
        fs::create_dir_all(&downloads)?;
        fs::create_dir_all(&out)?;
        let sdist = downloads.join(format!("faery-{FAERY_VERSION}.tar.gz"));
        if !sdist.exists() {
            crate::run(
                Command::new(self.python())
                    .args([
                        "-m",
                        "pip",
                        "download",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .args(["--no-deps", "--no-binary", "faery"])
                    .arg(format!("faery=={FAERY_VERSION}"))
                    .arg("-d")
                    .arg(&downloads),
                "pip download faery",
            )?;
        }
        let names: Vec<&str> = FAERY_FILES.iter().map(|(name, _)| *name).collect();
        let script = format!(
            "import sys, tarfile, os\n\
             names = sys.argv[3:]\n\
             with tarfile.open(sys.argv[1]) as tar:\n\
             \x20   for name in names:\n\
             \x20       member = tar.getmember('faery-{FAERY_VERSION}/tests/data/' + name)\n\
             \x20       data = tar.extractfile(member).read()\n\
             \x20       open(os.path.join(sys.argv[2], name), 'wb').write(data)\n"
        );
        crate::run(
            Command::new(self.python())
                .arg("-c")
                .arg(script)
                .arg(&sdist)
                .arg(&out)
                .args(&names),
            "extracting the faery recordings",
        )?;
        for (name, expected) in FAERY_FILES {
            let got = sha256(&self.python(), &out.join(name))?;
            if got != *expected {
                bail!("{name}: sha256 {got}, expected {expected}");
            }
        }
        Ok(())
    }

    /// `libonnxruntime.so.<version>` inside the venv's onnxruntime wheel.
    fn ort_library(&self) -> Result<Option<PathBuf>> {
        let lib = self.venv().join("lib");
        let Ok(entries) = fs::read_dir(&lib) else {
            return Ok(None);
        };
        for entry in entries.flatten() {
            let candidate = entry
                .path()
                .join("site-packages/onnxruntime/capi")
                .join(format!("libonnxruntime.so.{ORT_VERSION}"));
            if candidate.exists() {
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }
}

fn sha256(python: &Path, file: &Path) -> Result<String> {
    if !file.exists() {
        bail!("{} does not exist", file.display());
    }
    let output = Command::new(python)
        .args([
            "-c",
            "import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())",
        ])
        .arg(file)
        .output()
        .context("running python for sha256")?;
    if !output.status.success() {
        bail!("sha256 of {} failed", file.display());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}
