//! `faas-cli new` and `faas-cli build --shrinkwrap`, on the file system.

use std::fs;
use std::path::{Path, PathBuf};

use crate::stack::{LanguageTemplate, StackFile};
use crate::{Error, Result, io_error};

/// Options of [`new_function`], as `faas-cli new`'s flags.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewOptions {
    /// `--handler`: the folder to create (default: the function's name).
    pub handler_dir: Option<String>,
    /// `--prefix`: the image prefix, e.g. a registry account.
    pub prefix: Option<String>,
    /// `--gateway`: the gateway written in a new stack file.
    pub gateway: Option<String>,
    /// `--append`: an existing stack file to add the function to.
    pub append: Option<PathBuf>,
}

/// What [`new_function`] created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewFunction {
    /// The handler folder.
    pub handler_dir: PathBuf,
    /// The stack file written or appended to.
    pub stack_file: PathBuf,
    /// The template's welcome message, if any.
    pub welcome_message: Option<String>,
}

/// The stack file `faas-cli new` writes when not appending.
pub const DEFAULT_STACK_FILE: &str = "stack.yaml";
const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";

/// Checks a function name the way faas-cli does (an RFC 1123 label).
pub fn validate_function_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let ends_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if inner_ok && ends_ok(bytes.first()) && ends_ok(bytes.last()) {
        Ok(())
    } else {
        Err(Error::InvalidFunctionName(name.to_string()))
    }
}

/// `faas-cli new <name> --lang <lang>` run in `project`: copies the
/// template's handler folder (from `project/template/<lang>`) to the
/// handler folder and writes the function's entry to the stack file.
pub fn new_function(
    project: &Path,
    lang: &str,
    name: &str,
    options: &NewOptions,
) -> Result<NewFunction> {
    validate_function_name(name)?;
    let (template_dir, template) = load_template(project, lang)?;

    let stack_file = match &options.append {
        Some(file) => {
            let file = project.join(file);
            let ext_ok = file.extension().is_some_and(|e| e == "yml" || e == "yaml");
            if !ext_ok {
                return Err(Error::Yaml {
                    file: file.display().to_string(),
                    message: "when appending to a stack the suffix should be .yml or .yaml".into(),
                });
            }
            if StackFile::from_path(&file)?.functions.contains_key(name) {
                return Err(Error::AlreadyExists(PathBuf::from(format!(
                    "function {name} in {}",
                    file.display()
                ))));
            }
            file
        }
        None => {
            let file = project.join(DEFAULT_STACK_FILE);
            if file.exists() {
                return Err(Error::AlreadyExists(file));
            }
            file
        }
    };
    let handler = options
        .handler_dir
        .clone()
        .unwrap_or_else(|| name.to_string());
    let handler_dir = project.join(&handler);
    if handler_dir.exists() {
        return Err(Error::AlreadyExists(handler_dir));
    }
    fs::create_dir(&handler_dir).map_err(io_error(&handler_dir))?;
    update_gitignore(project)?;
    copy_tree(&template_dir.join(template.handler_folder()), &handler_dir)?;

    let image = match options
        .prefix
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        Some(prefix) => format!("{prefix}/{name}:latest"),
        None => format!("{name}:latest"),
    };
    let mut entry =
        format!("  {name}:\n    lang: {lang}\n    handler: ./{handler}\n    image: {image}\n\n");
    if options.append.is_none() {
        let gateway = options.gateway.as_deref().unwrap_or(DEFAULT_GATEWAY);
        entry = format!(
            "version: 1.0\nprovider:\n  name: openfaas\n  gateway: {gateway}\nfunctions:\n{entry}"
        );
    }
    let mut text = fs::read_to_string(&stack_file).unwrap_or_default();
    text.push_str(&entry);
    fs::write(&stack_file, text).map_err(io_error(&stack_file))?;
    Ok(NewFunction {
        handler_dir,
        stack_file,
        welcome_message: template.welcome_message,
    })
}

/// `faas-cli build --shrinkwrap -f <stack_file> --filter <name>`: clears
/// `build/<name>` next to the stack file, copies the function's template
/// folder there, and overlays the handler folder into its handler folder
/// (`function/`), skipping the handler's `build` and `template` folders.
/// Returns the build context.
pub fn shrinkwrap(stack_file: &Path, name: &str) -> Result<PathBuf> {
    let project = stack_file.parent().unwrap_or(Path::new("."));
    let stack = StackFile::from_path(stack_file)?;
    let function = stack.function(name)?;
    let lang = function.lang.as_deref().ok_or(Error::MissingField {
        function: name.to_string(),
        field: "lang",
    })?;
    let handler = function.handler.as_deref().ok_or(Error::MissingField {
        function: name.to_string(),
        field: "handler",
    })?;
    let (template_dir, template) = load_template(project, lang)?;
    let context = project.join("build").join(name);
    match fs::remove_dir_all(&context) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&context)(e)),
    }
    let function_dir = context.join(template.handler_folder());
    fs::create_dir_all(&function_dir).map_err(io_error(&function_dir))?;
    copy_tree(&template_dir, &context)?;
    let handler_dir = project.join(handler);
    for entry in fs::read_dir(&handler_dir).map_err(io_error(&handler_dir))? {
        let entry = entry.map_err(io_error(&handler_dir))?;
        let file_name = entry.file_name();
        if file_name == "build" || file_name == "template" {
            continue;
        }
        copy_path(&entry.path(), &function_dir.join(&file_name))?;
    }
    Ok(context)
}

/// `faas-cli template pull` from a local checkout: copies every folder of
/// `repository/template` into `project/template`, replacing templates of the
/// same name. Returns the languages installed.
pub fn install_templates(repository: &Path, project: &Path) -> Result<Vec<String>> {
    let source = repository.join("template");
    let mut installed = Vec::new();
    for entry in fs::read_dir(&source).map_err(io_error(&source))? {
        let entry = entry.map_err(io_error(&source))?;
        if !entry.path().join("template.yml").is_file() {
            continue;
        }
        let target = project.join("template").join(entry.file_name());
        match fs::remove_dir_all(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&target)(e)),
        }
        copy_tree(&entry.path(), &target)?;
        installed.push(entry.file_name().to_string_lossy().into_owned());
    }
    installed.sort();
    Ok(installed)
}

/// `project/template/<lang>` and its `template.yml`.
fn load_template(project: &Path, lang: &str) -> Result<(PathBuf, LanguageTemplate)> {
    let template_dir = project.join("template").join(lang);
    let template_yml = template_dir.join("template.yml");
    if !template_yml.is_file() {
        return Err(Error::UnknownTemplate {
            lang: lang.to_string(),
            dir: project.join("template"),
        });
    }
    let template = LanguageTemplate::from_path(&template_yml)?;
    Ok((template_dir, template))
}

fn update_gitignore(project: &Path) -> Result<()> {
    let path = project.join(".gitignore");
    let mut text = fs::read_to_string(&path).unwrap_or_default();
    let mut changed = false;
    for line in ["template", "build", ".secrets"] {
        if !text.lines().any(|l| l.trim() == line) {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(line);
            text.push('\n');
            changed = true;
        }
    }
    if changed {
        fs::write(&path, text).map_err(io_error(&path))?;
    }
    Ok(())
}

/// Copies the contents of `from` into `to` (created if missing), merging
/// with what `to` holds and overwriting files of the same name.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(io_error(to))?;
    for entry in fs::read_dir(from).map_err(io_error(from))? {
        let entry = entry.map_err(io_error(from))?;
        copy_path(&entry.path(), &to.join(entry.file_name()))?;
    }
    Ok(())
}

fn copy_path(from: &Path, to: &Path) -> Result<()> {
    let metadata = fs::metadata(from).map_err(io_error(from))?;
    if metadata.is_dir() {
        copy_tree(from, to)
    } else {
        fs::copy(from, to).map_err(io_error(from))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "openfaas-stack-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let template = dir.join("template/demo");
        fs::create_dir_all(template.join("function/src")).unwrap();
        fs::write(
            template.join("template.yml"),
            "language: demo\nfprocess: ./run\nwelcome_message: hi\n",
        )
        .unwrap();
        fs::write(template.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(template.join("function/src/lib.rs"), "// template\n").unwrap();
        fs::write(template.join("function/README"), "template readme\n").unwrap();
        dir
    }

    #[test]
    fn function_names_follow_rfc_1123() {
        for ok in ["a", "cart", "cdn-upload", "f1", "1f"] {
            assert!(validate_function_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Cart", "a_b", "a.b", "a b"] {
            assert!(validate_function_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_writes_the_handler_folder_and_the_stack_entry() {
        let dir = project();
        let created = new_function(&dir, "demo", "first", &NewOptions::default()).unwrap();
        assert_eq!(created.handler_dir, dir.join("first"));
        assert_eq!(created.welcome_message.as_deref(), Some("hi"));
        assert_eq!(
            fs::read_to_string(dir.join("first/src/lib.rs")).unwrap(),
            "// template\n"
        );
        let options = NewOptions {
            append: Some(PathBuf::from("stack.yaml")),
            prefix: Some("ghcr.io/acme".into()),
            ..NewOptions::default()
        };
        new_function(&dir, "demo", "second", &options).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("stack.yaml")).unwrap(),
            "version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://127.0.0.1:8080\nfunctions:\n  \
             first:\n    lang: demo\n    handler: ./first\n    image: first:latest\n\n  \
             second:\n    lang: demo\n    handler: ./second\n    image: ghcr.io/acme/second:latest\n\n"
        );
        let stack = StackFile::from_path(dir.join("stack.yaml")).unwrap();
        assert_eq!(stack.functions.len(), 2);
        assert_eq!(
            fs::read_to_string(dir.join(".gitignore")).unwrap(),
            "template\nbuild\n.secrets\n"
        );
        // Existing folders, duplicate names and unknown templates are refused.
        assert!(matches!(
            new_function(&dir, "demo", "third", &NewOptions::default()),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            new_function(&dir, "demo", "second", &options),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            new_function(&dir, "cobol", "x", &options),
            Err(Error::UnknownTemplate { .. })
        ));
        assert!(matches!(
            new_function(&dir, "demo", "Bad", &options),
            Err(Error::InvalidFunctionName(_))
        ));
    }

    #[test]
    fn shrinkwrap_overlays_the_handler_on_the_template() {
        let dir = project();
        new_function(&dir, "demo", "fn1", &NewOptions::default()).unwrap();
        fs::write(dir.join("fn1/src/lib.rs"), "// mine\n").unwrap();
        fs::create_dir_all(dir.join("fn1/src/extra")).unwrap();
        fs::write(dir.join("fn1/src/extra/mod.rs"), "// extra\n").unwrap();
        fs::create_dir_all(dir.join("fn1/build")).unwrap();
        fs::write(dir.join("fn1/build/skipped"), "").unwrap();
        // A stale file from an earlier build is cleared.
        fs::create_dir_all(dir.join("build/fn1")).unwrap();
        fs::write(dir.join("build/fn1/stale"), "").unwrap();
        let context = shrinkwrap(&dir.join("stack.yaml"), "fn1").unwrap();
        assert_eq!(context, dir.join("build/fn1"));
        assert_eq!(
            fs::read_to_string(context.join("Dockerfile")).unwrap(),
            "FROM scratch\n"
        );
        assert_eq!(
            fs::read_to_string(context.join("function/src/lib.rs")).unwrap(),
            "// mine\n"
        );
        assert_eq!(
            fs::read_to_string(context.join("function/src/extra/mod.rs")).unwrap(),
            "// extra\n"
        );
        // Files only the template has stay (faas-cli overlays, it does not replace).
        assert_eq!(
            fs::read_to_string(context.join("function/README")).unwrap(),
            "template readme\n"
        );
        assert!(!context.join("function/build").exists());
        assert!(!context.join("stale").exists());
        assert!(matches!(
            shrinkwrap(&dir.join("stack.yaml"), "nope"),
            Err(Error::UnknownFunction { .. })
        ));
    }
}
