//! `edge-devnet build`: functions of a stack file compiled with cargo
//! instead of Docker, and the registry mapping image names to binaries
//! (`<dir>/images.json`) that deployments are resolved against.
//!
//! The build context is laid out exactly as `faas-cli build --shrinkwrap`
//! does (`build/<function>` next to the stack file). The template is looked
//! up in `template/<lang>` next to the stack file or in a parent folder;
//! when that folder also holds this repository's `edge-sdk` and
//! `Cargo.lock`, edge-sdk is patched to it and its lock file reused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use openfaas_stack::StackFile;

/// The registry file in a devnet folder.
pub fn registry_path(dir: &Path) -> PathBuf {
    dir.join("images.json")
}

/// Image name → binary, as recorded by `build`.
pub fn read_registry(dir: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let path = registry_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("corrupt {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_registry(dir: &Path, registry: &BTreeMap<String, PathBuf>) -> anyhow::Result<()> {
    let path = registry_path(dir);
    let temporary = dir.join(".images.json.tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(registry)?)?;
    std::fs::rename(&temporary, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// What `build` made of one function.
#[derive(Debug, Clone)]
pub struct Built {
    /// The function.
    pub function: String,
    /// Its image name.
    pub image: String,
    /// The binary recorded for the image.
    pub binary: PathBuf,
}

/// Options of [`build`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Only these functions (all when empty).
    pub filter: Vec<String>,
    /// `cargo build --release`.
    pub release: bool,
}

/// Builds the functions of `stack_file` and records their images in the
/// devnet folder `dir`.
pub fn build(stack_file: &Path, dir: &Path, options: &BuildOptions) -> anyhow::Result<Vec<Built>> {
    let stack_file = std::path::absolute(stack_file)?;
    let stack = StackFile::from_path(&stack_file)?;
    let project = stack_file
        .parent()
        .context("the stack file has no folder")?
        .to_path_buf();
    for name in &options.filter {
        stack.function(name)?;
    }
    std::fs::create_dir_all(dir.join("bin"))?;
    let mut registry = read_registry(dir)?;
    let mut built = Vec::new();
    for (name, spec) in &stack.functions {
        if !options.filter.is_empty() && !options.filter.contains(name) {
            continue;
        }
        let image = spec
            .image
            .clone()
            .with_context(|| format!("function {name} has no image in {}", stack_file.display()))?;
        let lang = spec
            .lang
            .as_deref()
            .with_context(|| format!("function {name} has no lang in {}", stack_file.display()))?;
        let template_root = find_template_root(&project, lang).with_context(|| {
            format!("template {lang:?} not found in template/ next to {} or above it; run `faas-cli template pull <repository>`", stack_file.display())
        })?;
        // faas-cli looks for ./template next to the stack file; give it one.
        let local_template = project.join("template").join(lang);
        if !local_template.exists() {
            openfaas_stack::install_templates(&template_root, &project)?;
        }
        let context = openfaas_stack::shrinkwrap(&stack_file, name)?;
        let binary = compile(&context, &template_root, options.release)
            .with_context(|| format!("building function {name}"))?;
        let stored = dir.join("bin").join(sanitize(&image));
        // Copy, so that rebuilding never changes the binary of a running function.
        let temporary = stored.with_extension("tmp");
        std::fs::copy(&binary, &temporary)?;
        std::fs::rename(&temporary, &stored)?;
        registry.insert(image.clone(), stored.clone());
        built.push(Built {
            function: name.clone(),
            image,
            binary: stored,
        });
    }
    write_registry(dir, &registry)?;
    Ok(built)
}

/// Records an already built `binary` for `image` (copied into the devnet
/// folder, so that rebuilding it never changes a running function).
pub fn add(dir: &Path, image: &str, binary: &Path) -> anyhow::Result<PathBuf> {
    if !binary.is_file() {
        bail!("{} is not a file", binary.display());
    }
    std::fs::create_dir_all(dir.join("bin"))?;
    let stored = dir.join("bin").join(sanitize(image));
    let temporary = stored.with_extension("tmp");
    std::fs::copy(binary, &temporary)
        .with_context(|| format!("cannot copy {}", binary.display()))?;
    std::fs::rename(&temporary, &stored)?;
    let mut registry = read_registry(dir)?;
    registry.insert(image.to_string(), stored.clone());
    write_registry(dir, &registry)?;
    Ok(stored)
}

/// Where the template comes from: the nearest folder at or above `start`
/// that is a checkout of this repository (`template/<lang>` and
/// `edge-sdk/`), else the nearest that has `template/<lang>`. A checkout
/// wins over a nearer copy, such as the one a first build installs next to
/// the stack file, so that edge-sdk stays patched to the checkout.
fn find_template_root(start: &Path, lang: &str) -> Option<PathBuf> {
    let has_template = |dir: &Path| {
        dir.join("template")
            .join(lang)
            .join("template.yml")
            .is_file()
    };
    start
        .ancestors()
        .find(|dir| has_template(dir) && dir.join("edge-sdk/Cargo.toml").is_file())
        .or_else(|| start.ancestors().find(|dir| has_template(dir)))
        .map(Path::to_path_buf)
}

fn compile(context: &Path, template_root: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command.current_dir(context).arg("build");
    if release {
        command.arg("--release");
    }
    let edge_sdk = template_root.join("edge-sdk");
    let checkout = edge_sdk.join("Cargo.toml").is_file();
    if checkout {
        command.arg("--config").arg(format!(
            "patch.crates-io.edge-sdk.path={:?}",
            edge_sdk.display().to_string()
        ));
        let lock = template_root.join("Cargo.lock");
        if lock.is_file() && !context.join("Cargo.lock").exists() {
            std::fs::copy(&lock, context.join("Cargo.lock"))?;
        }
    }
    // One target folder for every function of a checkout, so that their
    // common dependencies are compiled once.
    let target = if checkout {
        template_root.join("target/function-builds")
    } else {
        context.join("target")
    };
    command.env("CARGO_TARGET_DIR", &target);
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed in {}", context.display());
    }
    let binary = target
        .join(if release { "release" } else { "debug" })
        .join("handler");
    if !binary.is_file() {
        bail!(
            "cargo build produced no `handler` binary in {}",
            target.display()
        );
    }
    Ok(binary)
}

/// An image name as a file name.
fn sanitize(image: &str) -> String {
    image
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
