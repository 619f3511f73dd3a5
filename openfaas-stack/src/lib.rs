//! OpenFaaS stack files (`stack.yaml`) and language templates, read and laid
//! out the way `faas-cli` does, so that our tools and tests can do without
//! it:
//!
//! - [`StackFile`]: the functions of a stack file, with the fields
//!   `faas-cli deploy` reads;
//! - [`LanguageTemplate`]: a template's `template.yml`;
//! - [`FunctionDeployment`], [`Secret`], [`FunctionStatus`]: the gateway's
//!   REST types, and the deployment `faas-cli deploy` builds from a stack;
//! - [`install_templates`]: `faas-cli template pull` from a local checkout;
//! - [`new_function`]: `faas-cli new NAME --lang LANG` — the template's
//!   handler folder copied to `./NAME`, and the function's entry written to
//!   the stack file;
//! - [`shrinkwrap`]: `faas-cli build --shrinkwrap` — `./build/NAME` holding
//!   the template folder with the handler overlaid into its `function/`.
//!
//! ```
//! let stack = openfaas_stack::StackFile::parse(
//!     "version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  cart:\n    lang: rust-edge\n    handler: ./cart\n    image: cart:latest\n",
//! ).unwrap();
//! assert_eq!(stack.functions["cart"].image.as_deref(), Some("cart:latest"));
//! ```

mod gateway;
mod layout;
mod stack;

pub use gateway::{
    DeleteFunctionRequest, FunctionDeployment, FunctionResources, FunctionStatus, Secret,
};
pub use layout::{
    DEFAULT_STACK_FILE, NewFunction, NewOptions, install_templates, new_function, shrinkwrap,
    validate_function_name,
};
pub use stack::{FunctionSpec, LanguageTemplate, Provider, Resources, StackFile};

use std::path::PathBuf;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading stack files and templates or laying them out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A YAML file is malformed or has a field of the wrong type.
    #[error("{file}: {message}")]
    Yaml {
        /// The file (or `<text>` when parsed from a string).
        file: String,
        /// What is wrong, with line and column when known.
        message: String,
    },
    /// A function name that OpenFaaS would refuse.
    #[error(
        "invalid function name {0:?}: use a-z, 0-9 and '-' (an RFC 1123 label), starting and ending with a letter or digit"
    )]
    InvalidFunctionName(String),
    /// The stack file has no function of that name.
    #[error("no function named {name:?} in the stack file (it has: {known})")]
    UnknownFunction {
        /// The name asked for.
        name: String,
        /// The names it has.
        known: String,
    },
    /// Something that must not exist already does (faas-cli refuses too).
    #[error("{0} already exists")]
    AlreadyExists(PathBuf),
    /// A template that is not in `./template`.
    #[error(
        "template {lang:?} not found in {dir} (run `faas-cli template pull <repository>` first)"
    )]
    UnknownTemplate {
        /// The language asked for.
        lang: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A function without the field an operation needs.
    #[error("function {function:?} has no {field:?} in the stack file")]
    MissingField {
        /// The function.
        function: String,
        /// The field.
        field: &'static str,
    },
}

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
