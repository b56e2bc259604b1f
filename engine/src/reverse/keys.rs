//! From target changes to keys: the change stream on the target
//! ([`crate::change_stream`] built for [`crate::Side::Target`]) maps each
//! changelog row of a target table, old and new image, through the table's
//! inverse mapping to its target key, the source key it maps to and the
//! source bucket column value (which decides whether the bucket is
//! switched).

use crate::apply::ChangedKey;
use crate::changelog::Change;
use crate::error::{EngineError, Result};
use crate::link::Link;
use crate::value::Value;

/// A source key a target change touches, with its bucket column value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TouchedSourceKey {
    pub key: Vec<Value>,
    pub bucket: Value,
}

/// The target keys of spec table `table` that `changes` touch (with the
/// source bucket value of each), and the source keys their images map to.
pub(crate) async fn keys_for_target_changes(
    link: &Link,
    table: &str,
    changes: &[Change],
) -> Result<(Vec<ChangedKey>, Vec<TouchedSourceKey>)> {
    if !changes.iter().any(|c| c.table == table) {
        return Ok((Vec::new(), Vec::new()));
    }
    let rt = link.reverse_table(table).await?;
    let mut keys = Vec::new();
    let mut source_keys = Vec::new();
    for c in changes.iter().filter(|c| c.table == table) {
        for img in c.images() {
            let (key, source_key, bucket) =
                rt.from_image(img).map_err(|m| EngineError::Schema {
                    table: table.to_string(),
                    message: format!("change {} in the target's changelog: {m}", c.seq),
                })?;
            keys.push(ChangedKey {
                key,
                bucket: Some(bucket.clone()),
                seq: c.seq,
            });
            source_keys.push(TouchedSourceKey {
                key: source_key,
                bucket,
            });
        }
    }
    Ok((keys, source_keys))
}
