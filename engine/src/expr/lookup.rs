//! `lookup(table, column, key)`: a value of another source table, read by
//! its primary key (`lookup(table, column, by, key)`: by another column).
//!
//! An expression is evaluated synchronously, one record at a time, while the
//! source is read asynchronously. So a lookup never reads the database
//! itself: the transform of a chunk first evaluates the chunk's expressions
//! with a [`LookupBatch`] that only *collects* the keys asked for (answering
//! NULL), reads all of them from the source in a few `IN (…)` queries, and
//! repeats while answers lead to new keys (a lookup of a lookup), at most
//! [`MAX_ROUNDS`] times. Then the chunk is transformed for real with every
//! answer at hand. One batch per chunk: nothing is cached across chunks (a
//! looked-up row may change between them), and a batch holds at most
//! [`MAX_KEYS`] keys, so memory stays bounded.
//!
//! The batch reaches the registered function through a thread-local: it is
//! installed around a synchronous run ([`LookupBatch::run`]) and taken back
//! after, with no `.await` between.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use rhai::{Dynamic, Engine, EvalAltResult};

use super::{from_dynamic, to_dynamic};
use crate::value::Value;

/// Rounds of reading a chunk's lookups (a lookup whose key is another
/// lookup's answer needs a second round, and so on).
pub const MAX_ROUNDS: usize = 4;

/// Keys one chunk's lookups may hold, over all tables.
pub const MAX_KEYS: usize = 200_000;

/// The rows a lookup reads: a source table, found by `by` (`None`: its
/// primary key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LookupTable {
    pub table: String,
    pub by: Option<String>,
}

impl LookupTable {
    /// How the lookup is written, for messages.
    pub fn describe(&self, column: &str) -> String {
        match &self.by {
            Some(by) => format!("lookup(\"{}\", \"{column}\", \"{by}\", …)", self.table),
            None => format!("lookup(\"{}\", \"{column}\", …)", self.table),
        }
    }
}

/// What a round asks the source for, per table: keys (by their canonical
/// text) and the columns wanted of them.
#[derive(Debug, Default)]
pub struct Wanted {
    pub keys: HashMap<String, Value>,
    pub columns: HashSet<String>,
}

/// The answers of one chunk's lookups, and what is still to be read.
#[derive(Debug, Default)]
pub struct LookupBatch {
    /// Per table and key text: the row found (the columns read of it), or
    /// `None` when the source has no such row.
    found: HashMap<LookupTable, HashMap<String, Option<HashMap<String, Value>>>>,
    wanted: HashMap<LookupTable, Wanted>,
    /// Collecting: a missing answer is noted and NULL given for now.
    collecting: bool,
    keys: usize,
}

thread_local! {
    static ACTIVE: RefCell<Option<LookupBatch>> = const { RefCell::new(None) };
    /// Set while a spec or fix is checked with NULL columns.
    static TRIAL: Cell<bool> = const { Cell::new(false) };
}

impl LookupBatch {
    /// Runs `f` (synchronous evaluations) with this batch answering lookups;
    /// `collecting` notes missing answers instead of failing on them.
    pub fn run<R>(&mut self, collecting: bool, f: impl FnOnce() -> R) -> R {
        self.collecting = collecting;
        let mine = std::mem::take(self);
        ACTIVE.with(|a| *a.borrow_mut() = Some(mine));
        let out = f();
        *self = ACTIVE.with(|a| a.borrow_mut().take()).unwrap_or_default();
        out
    }

    /// Takes what the last collecting run asked for and did not have.
    pub fn take_wanted(&mut self) -> HashMap<LookupTable, Wanted> {
        std::mem::take(&mut self.wanted)
    }

    /// Records what the source gave for `asked` keys of `table`: `rows` by
    /// key text, each with the `columns` read; an asked key without a row
    /// is remembered as absent. `Err` when the batch would hold more than
    /// [`MAX_KEYS`] keys.
    pub fn insert(
        &mut self,
        table: &LookupTable,
        asked: impl IntoIterator<Item = String>,
        mut rows: HashMap<String, HashMap<String, Value>>,
    ) -> Result<(), String> {
        let found = self.found.entry(table.clone()).or_default();
        for key in asked {
            let row = rows.remove(&key);
            if found.insert(key, row).is_none() {
                self.keys += 1;
            }
        }
        if self.keys > MAX_KEYS {
            return Err(format!(
                "the lookups of one chunk ask for more than {MAX_KEYS} keys; \
                 make the spec's chunk_rows smaller"
            ));
        }
        Ok(())
    }

    /// The columns of `table` already read for `key`, to read them again
    /// with more.
    pub fn columns_read(&self, table: &LookupTable, key: &str) -> Vec<String> {
        self.found
            .get(table)
            .and_then(|f| f.get(key))
            .and_then(|r| r.as_ref())
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn answer(&mut self, table: LookupTable, column: &str, key: Value) -> Result<Dynamic, String> {
        let text = key.canonical_text();
        match self.found.get(&table).and_then(|f| f.get(&text)) {
            Some(None) => return Ok(Dynamic::UNIT),
            Some(Some(row)) => {
                if let Some(v) = row.get(column) {
                    return Ok(to_dynamic(v.clone()));
                }
            }
            None => {}
        }
        if !self.collecting {
            return Err(format!(
                "{} of key {text} was not read: lookups may nest at most {MAX_ROUNDS} deep",
                table.describe(column)
            ));
        }
        let w = self.wanted.entry(table).or_default();
        w.keys.insert(text, key);
        w.columns.insert(column.to_string());
        Ok(Dynamic::UNIT)
    }
}

/// Runs `f` as the trial run of a check, in which a lookup answers NULL.
pub(super) fn trial<R>(f: impl FnOnce() -> R) -> R {
    TRIAL.with(|t| t.set(true));
    let out = f();
    TRIAL.with(|t| t.set(false));
    out
}

fn lookup(
    table: &str,
    column: &str,
    by: Option<&str>,
    key: Dynamic,
) -> Result<Dynamic, Box<EvalAltResult>> {
    if key.is_unit() {
        return Ok(Dynamic::UNIT);
    }
    let key = from_dynamic(key)?;
    let table = LookupTable {
        table: table.to_string(),
        by: by.map(str::to_string),
    };
    ACTIVE.with(|a| match a.borrow_mut().as_mut() {
        Some(batch) => batch.answer(table, column, key).map_err(Into::into),
        None if TRIAL.with(Cell::get) => Ok(Dynamic::UNIT),
        None => Err(format!(
            "{} reads the source of a migration: it works in a spec's columns, not here",
            table.describe(column)
        )
        .into()),
    })
}

pub(super) fn register(e: &mut Engine) {
    e.register_fn(
        "lookup",
        |table: &str, column: &str, key: Dynamic| -> Result<Dynamic, Box<EvalAltResult>> {
            lookup(table, column, None, key)
        },
    );
    e.register_fn(
        "lookup",
        |table: &str,
         column: &str,
         by: &str,
         key: Dynamic|
         -> Result<Dynamic, Box<EvalAltResult>> { lookup(table, column, Some(by), key) },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Expression;

    fn eval(e: &Expression, member: i64) -> Result<Value, String> {
        e.eval(|c| (c == "member_id").then_some(Value::Int(member)))
    }

    #[test]
    fn a_batch_collects_then_answers_and_outside_a_batch_a_lookup_is_refused() {
        let e = Expression::compile(r#"lookup("members", "name", member_id)"#, None)
            .expect("a lookup compiles");
        let members = LookupTable {
            table: "members".into(),
            by: None,
        };
        let mut batch = LookupBatch::default();

        let collected = batch.run(true, || (eval(&e, 1), eval(&e, 2)));
        let wanted = batch.take_wanted();
        let rows = HashMap::from([(
            "1".to_string(),
            HashMap::from([("name".to_string(), Value::Text("Ada".into()))]),
        )]);
        let inserted = batch.insert(&members, ["1".to_string(), "2".to_string()], rows);
        let answered = batch.run(false, || (eval(&e, 1), eval(&e, 2), eval(&e, 3)));
        let outside = eval(&e, 1);

        assert_eq!(collected, (Ok(Value::Null), Ok(Value::Null)));
        let w = wanted.get(&members).map(|w| {
            let mut k: Vec<&String> = w.keys.keys().collect();
            k.sort();
            (k.into_iter().cloned().collect::<Vec<_>>(), w.columns.len())
        });
        assert_eq!(w, Some((vec!["1".to_string(), "2".to_string()], 1)));
        assert_eq!(inserted, Ok(()));
        assert_eq!(answered.0, Ok(Value::Text("Ada".into())));
        assert_eq!(answered.1, Ok(Value::Null), "no such row: NULL");
        assert!(
            answered
                .2
                .as_ref()
                .is_err_and(|m| m.contains("was not read")),
            "{:?}",
            answered.2
        );
        assert!(
            outside
                .as_ref()
                .is_err_and(|m| m.contains("works in a spec's columns")),
            "{outside:?}"
        );
    }

    #[test]
    fn a_wrong_number_of_arguments_is_refused_when_read() {
        let err = Expression::compile(r#"lookup("members", member_id)"#, None).unwrap_err();
        assert!(err.contains("calls `lookup`"), "{err}");
    }
}
