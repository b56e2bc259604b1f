//! Transformer plug-ins: Rust code that a spec names in a table's
//! `transformers = [...]` chain.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::{Emitted, Record};

/// One stage of a table's transformer chain. It is called once per source
/// record, after the built-in mapping and the transformers before it, and may
/// change any emitted row, remove rows, or add rows for other target tables.
/// It must be deterministic: the same record gives the same rows in every run
/// and process (the relay re-runs it for single keys). An `Err` message names
/// what is wrong; the engine adds the table and row key.
pub trait Transformer: Send + Sync {
    fn transform(&self, record: &Record<'_>, out: &mut Emitted<'_>) -> Result<(), String>;
}

impl<F> Transformer for F
where
    F: Fn(&Record<'_>, &mut Emitted<'_>) -> Result<(), String> + Send + Sync,
{
    fn transform(&self, record: &Record<'_>, out: &mut Emitted<'_>) -> Result<(), String> {
        self(record, out)
    }
}

/// The transformers a spec may name, by name.
#[derive(Clone, Default)]
pub struct TransformerRegistry {
    by_name: HashMap<String, Arc<dyn Transformer>>,
}

impl TransformerRegistry {
    pub fn new() -> TransformerRegistry {
        TransformerRegistry::default()
    }

    /// Registers (or replaces) a transformer under `name`.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        t: impl Transformer + 'static,
    ) -> &mut Self {
        self.by_name.insert(name.into(), Arc::new(t));
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Transformer>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for TransformerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformerRegistry")
            .field("names", &self.names())
            .finish()
    }
}
