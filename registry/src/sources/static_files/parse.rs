//! From the text of one file to validated objects and document errors. Pure: the caller
//! reads the file. Used by the control server and by `hostmesh validate` alike.

use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::document::{PathIndex, RawDocument, split_documents};
use super::error::DocumentError;
use crate::model::config::{ConfigObject, Kind, Meta, ObjectKey};
use crate::model::istio::ObjectMeta;
use crate::model::types::{Namespace, ObjectName};
use crate::model::validate::{self, Context, FieldError};

/// A validated object and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedObject {
    pub object: ConfigObject,
    pub line: usize,
}

/// What one file gave.
#[derive(Debug, Default, Clone)]
pub struct ParsedFile {
    /// Good objects, in file order.
    pub objects: Vec<LoadedObject>,
    pub errors: Vec<DocumentError>,
    /// Number of non-empty documents.
    pub documents: usize,
}

/// The fields read first, leniently, to know what the document is.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<HeaderMeta>,
}

#[derive(Debug, Deserialize)]
struct HeaderMeta {
    name: Option<String>,
    namespace: Option<String>,
}

/// A whole document, strictly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Document<S> {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
}

/// Parses and validates every document of a file.
pub fn parse_file(file: &Path, text: &str, ctx: &Context) -> ParsedFile {
    let mut out = ParsedFile::default();
    for doc in split_documents(text) {
        if doc.is_empty() {
            continue;
        }
        out.documents += 1;
        match parse_document(file, &doc, ctx) {
            Ok(o) => out.objects.push(o),
            Err(mut errs) => out.errors.append(&mut errs),
        }
    }
    out
}

/// Who the document says it is, for messages and for keeping its last good version.
struct Identity {
    label: String,
    key: Option<ObjectKey>,
}

fn parse_document(
    file: &Path,
    doc: &RawDocument,
    ctx: &Context,
) -> Result<LoadedObject, Vec<DocumentError>> {
    let index = PathIndex::build(doc);
    let error =
        |line: usize, id: Option<&Identity>, field: Option<&str>, message: String| DocumentError {
            file: file.to_owned(),
            line,
            object: id.map(|i| i.label.clone()),
            key: id.and_then(|i| i.key.clone()),
            field: field.map(str::to_owned),
            message,
        };
    let header: Header = serde_saphyr::from_str(&doc.text)
        .map_err(|e| vec![error(saphyr_line(&e, doc), None, None, saphyr_message(&e))])?;
    let kind_name = header.kind.as_deref().unwrap_or_default();
    let Some(kind) = Kind::parse(kind_name) else {
        let message = if kind_name.is_empty() {
            "kind is required".to_owned()
        } else {
            let known: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "kind {kind_name:?} is not supported (one of {})",
                known.join(", ")
            )
        };
        return Err(vec![error(
            index.line_of("kind"),
            None,
            Some("kind"),
            message,
        )]);
    };
    let id = identity(kind, header.metadata.as_ref(), ctx);
    let api_version = header.api_version.as_deref().unwrap_or_default();
    if !kind.accepts_api_version(api_version) {
        let accepted: Vec<String> = kind
            .versions()
            .iter()
            .map(|v| format!("{}/{v}", kind.group()))
            .collect();
        let message = format!(
            "apiVersion {api_version:?} is not accepted for {kind} (one of {})",
            accepted.join(", ")
        );
        return Err(vec![error(
            index.line_of("apiVersion"),
            Some(&id),
            Some("apiVersion"),
            message,
        )]);
    }
    let to_doc_errors = |errs: Vec<FieldError>| -> Vec<DocumentError> {
        errs.into_iter()
            .map(|e| error(index.line_of(&e.path), Some(&id), Some(&e.path), e.message))
            .collect()
    };
    let strict_error = |(path, e): (String, Box<serde_saphyr::Error>)| {
        let field = (!path.is_empty() && path != ".").then_some(path);
        vec![error(
            saphyr_line(&e, doc),
            Some(&id),
            field.as_deref(),
            saphyr_message(&e),
        )]
    };
    let object = match kind {
        Kind::ServiceEntry => typed(doc, ctx, validate::service_entry)
            .map_err(|e| e.either(strict_error, to_doc_errors))?
            .map(ConfigObject::ServiceEntry),
        Kind::WorkloadEntry => typed(doc, ctx, validate::workload_entry)
            .map_err(|e| e.either(strict_error, to_doc_errors))?
            .map(ConfigObject::WorkloadEntry),
        Kind::WorkloadGroup => typed(doc, ctx, validate::workload_group)
            .map_err(|e| e.either(strict_error, to_doc_errors))?
            .map(ConfigObject::WorkloadGroup),
        Kind::VirtualService => typed(doc, ctx, validate::virtual_service)
            .map_err(|e| e.either(strict_error, to_doc_errors))?
            .map(ConfigObject::VirtualService),
        Kind::DestinationRule => typed(doc, ctx, validate::destination_rule)
            .map_err(|e| e.either(strict_error, to_doc_errors))?
            .map(ConfigObject::DestinationRule),
        Kind::Gateway => typed(doc, ctx, validate::gateway)
            .map_err(|e| e.either(strict_error, to_doc_errors))?
            .map(ConfigObject::Gateway),
        Kind::PeerAuthentication => typed(doc, ctx, validate::peer_authentication)
            .map_err(|e| e.either(strict_error, to_doc_errors))?
            .map(ConfigObject::PeerAuthentication),
        Kind::AuthorizationPolicy => typed(doc, ctx, validate::authorization_policy)
            .map_err(|e| e.either(strict_error, to_doc_errors))?
            .map(ConfigObject::AuthorizationPolicy),
    };
    object
        .map(|object| LoadedObject {
            object,
            line: doc.content_line(),
        })
        .map_err(to_doc_errors)
}

fn identity(kind: Kind, meta: Option<&HeaderMeta>, ctx: &Context) -> Identity {
    let name = meta.and_then(|m| m.name.clone()).unwrap_or_default();
    let namespace = meta
        .and_then(|m| m.namespace.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| ctx.default_namespace.as_str().to_owned());
    let label = format!(
        "{kind} {namespace}/{}",
        if name.is_empty() { "<no name>" } else { &name }
    );
    let key = match (Namespace::new(&namespace), ObjectName::new(&name)) {
        (Ok(namespace), Ok(name)) => Some(ObjectKey {
            kind,
            namespace,
            name,
        }),
        _ => None,
    };
    Identity { label, key }
}

/// Either a shape error (path and parser error) or validation errors.
enum TypedError {
    Shape(String, Box<serde_saphyr::Error>),
    Invalid(Vec<FieldError>),
}

impl TypedError {
    fn either<R>(
        self,
        shape: impl FnOnce((String, Box<serde_saphyr::Error>)) -> R,
        invalid: impl FnOnce(Vec<FieldError>) -> R,
    ) -> R {
        match self {
            TypedError::Shape(p, e) => shape((p, e)),
            TypedError::Invalid(errs) => invalid(errs),
        }
    }
}

type Validator<S, T> = fn(Meta, &S, &Context) -> Result<T, Vec<FieldError>>;

/// Deserialises the document strictly as `Document<S>`, then validates metadata and spec.
/// The outer result is the shape; the inner one is left for the caller to map.
#[allow(clippy::type_complexity)]
fn typed<S, T>(
    doc: &RawDocument,
    ctx: &Context,
    validator: Validator<S, T>,
) -> Result<Result<T, Vec<FieldError>>, TypedError>
where
    S: DeserializeOwned + Default,
{
    let mut path = String::new();
    let parsed: Result<Document<S>, serde_saphyr::Error> =
        serde_saphyr::with_deserializer_from_str(&doc.text, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                path = e.path().to_string();
                e.into_inner()
            })
        });
    let parsed = parsed.map_err(|e| TypedError::Shape(path, Box::new(e)))?;
    let meta = validate::meta(&parsed.metadata, ctx).map_err(TypedError::Invalid)?;
    Ok(validator(meta, &parsed.spec, ctx))
}

/// The line of a parser error, else the document's first line.
fn saphyr_line(e: &serde_saphyr::Error, doc: &RawDocument) -> usize {
    e.location()
        .and_then(|l| usize::try_from(l.line()).ok())
        .filter(|l| *l > 0)
        .unwrap_or(doc.start_line)
}

/// The parser's message without its own " at line …, column …" suffix.
fn saphyr_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
