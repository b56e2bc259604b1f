//! The SQL that installs and finds capture triggers, per dialect. Every
//! object Tern creates in the source is named `_tern_capture…` or is one of
//! the two tables, so removal finds them all by name, whatever spec installed
//! them.

use super::{CAPTURE_TABLE, CapturedTable};
use crate::changelog::{CHANGELOG_TABLE, clock_sql};
use crate::connector::origin::{ORIGIN_TABLE, unmarked_sql};
use crate::connector::{Dialect, object_name};

/// The trigger name (PostgreSQL: one per table, so the same on every table).
pub(super) const PG_TRIGGER: &str = "_tern_capture";
/// Prefix of every trigger and trigger function Tern creates.
pub(super) const PREFIX: &str = "_tern_capture_";

/// `schema.` of a qualified table name (with the dot), or empty.
fn schema_of(table: &str) -> Option<&str> {
    table.rsplit_once('.').map(|(s, _)| s)
}

fn base_of(table: &str) -> &str {
    table.rsplit('.').next().unwrap_or(table)
}

/// `JSON_OBJECT('a', NEW.a, …)` in the dialect, for `NEW` or `OLD`.
fn image(d: Dialect, t: &CapturedTable, row: &str) -> String {
    let f = match d {
        Dialect::Postgres => "json_build_object",
        Dialect::MySql => "JSON_OBJECT",
        Dialect::Sqlite => "json_object",
    };
    let args: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("'{c}', {row}.{}", d.quote(c)))
        .collect();
    let obj = format!("{f}({})", args.join(", "));
    if d == Dialect::Postgres {
        format!("{obj}::text")
    } else {
        obj
    }
}

fn insert(d: Dialect, changelog: &str, t: &CapturedTable, op: char) -> String {
    let old = if op == 'I' {
        "NULL".to_string()
    } else {
        image(d, t, "OLD")
    };
    let new = if op == 'D' {
        "NULL".to_string()
    } else {
        image(d, t, "NEW")
    };
    let values = format!(
        "VALUES ('{}', '{op}', {old}, {new}, {})",
        t.table,
        clock_sql(d)
    );
    format!("INSERT INTO {changelog} (table_name, op, old_row, new_row, changed_at) {values}")
}

/// The changelog and meta tables.
pub(super) fn create_tables(d: Dialect, schema: Option<&str>) -> Vec<String> {
    let q = |name: &str| match schema {
        Some(s) => format!("{}.{}", d.quote(s), d.quote(name)),
        None => d.quote(name),
    };
    match d {
        Dialect::Postgres => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {} (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                 table_name VARCHAR(255) NOT NULL, op CHAR(1) NOT NULL, old_row TEXT, new_row TEXT, \
                 changed_at BIGINT NOT NULL)",
                q(CHANGELOG_TABLE)
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (name VARCHAR(255) PRIMARY KEY, value BIGINT NOT NULL)",
                q(CAPTURE_TABLE)
            ),
        ],
        Dialect::MySql => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {} (seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
                 table_name VARCHAR(255) NOT NULL, op CHAR(1) NOT NULL, old_row LONGTEXT, new_row LONGTEXT, \
                 changed_at BIGINT NOT NULL) ENGINE=InnoDB",
                q(CHANGELOG_TABLE)
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (name VARCHAR(255) NOT NULL PRIMARY KEY, value BIGINT NOT NULL) ENGINE=InnoDB",
                q(CAPTURE_TABLE)
            ),
        ],
        // INTEGER PRIMARY KEY without AUTOINCREMENT: AUTOINCREMENT would add
        // `sqlite_sequence`, which cannot be dropped, so removal would not
        // leave the schema as it was. Numbers are not reused as long as the
        // highest row stays, and pruning always keeps it.
        Dialect::Sqlite => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {} (seq INTEGER PRIMARY KEY, table_name TEXT NOT NULL, \
                 op TEXT NOT NULL, old_row TEXT, new_row TEXT, changed_at INTEGER NOT NULL)",
                q(CHANGELOG_TABLE)
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
                q(CAPTURE_TABLE)
            ),
            // SQLite's origin mark (`crate::connector::origin`): never holds
            // a committed row.
            format!(
                "CREATE TABLE IF NOT EXISTS {} (origin TEXT NOT NULL)",
                q(ORIGIN_TABLE)
            ),
        ],
    }
}

/// Statements that (re)install the capture of one table. `changelog` is the
/// qualified changelog table; `replace_triggers` is false for MySQL servers
/// without `CREATE OR REPLACE TRIGGER` (then the old ones are dropped first).
pub(super) fn install_table(
    d: Dialect,
    t: &CapturedTable,
    changelog: &str,
    default_schema: &str,
    replace_triggers: bool,
) -> Vec<String> {
    let table = d.quote(&t.table);
    match d {
        Dialect::Postgres => {
            let schema = schema_of(&t.table).unwrap_or(default_schema);
            let function = format!(
                "{}.{}",
                d.quote(schema),
                d.quote(&object_name(PREFIX, base_of(&t.table), ""))
            );
            // SECURITY DEFINER: the application's role need not be allowed to
            // write the changelog; the fixed search_path keeps the definer's
            // rights from being borrowed through objects of another schema.
            vec![
                format!(
                    "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
                     SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $tern$\n\
                     BEGIN\n\
                       IF NOT ({}) THEN\n    RETURN NULL;\n  END IF;\n\
                       IF TG_OP = 'INSERT' THEN\n    {};\n\
                       ELSIF TG_OP = 'UPDATE' THEN\n    {};\n\
                       ELSE\n    {};\n\
                       END IF;\n\
                       RETURN NULL;\n\
                     END\n$tern$",
                    unmarked_sql(d),
                    insert(d, changelog, t, 'I'),
                    insert(d, changelog, t, 'U'),
                    insert(d, changelog, t, 'D'),
                ),
                format!(
                    "CREATE OR REPLACE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {table} \
                     FOR EACH ROW EXECUTE FUNCTION {function}()",
                    d.quote(PG_TRIGGER)
                ),
            ]
        }
        Dialect::MySql | Dialect::Sqlite => {
            let mut out = Vec::new();
            for (op, event, suffix) in [
                ('I', "INSERT", "_i"),
                ('U', "UPDATE", "_u"),
                ('D', "DELETE", "_d"),
            ] {
                let name = object_name(PREFIX, base_of(&t.table), suffix);
                let name = match schema_of(&t.table) {
                    Some(s) => format!("{}.{}", d.quote(s), d.quote(&name)),
                    None => d.quote(&name),
                };
                let body = insert(d, changelog, t, op);
                if d == Dialect::MySql {
                    // MySQL triggers have no WHEN: the insert is skipped while
                    // Tern's origin mark is set (see `crate::connector::origin`).
                    // An `INSERT … SELECT … WHERE` would do the same but counts
                    // as a bulk insert, which holds the changelog's AUTO-INC
                    // table lock to the end of the application's statement:
                    // concurrent writers then deadlock on it (MariaDB error
                    // 1467, "Failed to read auto-increment value").
                    let body = format!("IF {} THEN {body}; END IF", unmarked_sql(d));
                    if replace_triggers {
                        out.push(format!(
                            "CREATE OR REPLACE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW {body}"
                        ));
                    } else {
                        out.push(format!("DROP TRIGGER IF EXISTS {name}"));
                        out.push(format!(
                            "CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW {body}"
                        ));
                    }
                } else {
                    out.push(format!("DROP TRIGGER IF EXISTS {name}"));
                    out.push(format!(
                        "CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW WHEN {} \
                         BEGIN {body}; END",
                        unmarked_sql(d)
                    ));
                }
            }
            out
        }
    }
}

/// A query listing `(statement that drops it, description)` for every
/// capture trigger, trigger function and table, in drop order.
/// Statements that drop the capture triggers (and, on PostgreSQL, the
/// trigger function) of `table`, whatever else the database captures; each
/// is a no-op when the object is not there.
pub(super) fn drop_table_capture(d: Dialect, table: &str, default_schema: &str) -> Vec<String> {
    let quoted = d.quote(table);
    match d {
        Dialect::Postgres => {
            let schema = schema_of(table).unwrap_or(default_schema);
            vec![
                format!("DROP TRIGGER IF EXISTS {} ON {quoted}", d.quote(PG_TRIGGER)),
                format!(
                    "DROP FUNCTION IF EXISTS {}.{}()",
                    d.quote(schema),
                    d.quote(&object_name(PREFIX, base_of(table), ""))
                ),
            ]
        }
        Dialect::MySql | Dialect::Sqlite => ["_i", "_u", "_d"]
            .iter()
            .map(|suffix| {
                let name = d.quote(&object_name(PREFIX, base_of(table), suffix));
                match schema_of(table) {
                    Some(s) => format!("DROP TRIGGER IF EXISTS {}.{name}", d.quote(s)),
                    None => format!("DROP TRIGGER IF EXISTS {name}"),
                }
            })
            .collect(),
    }
}

pub(super) fn list_objects_sql(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => {
            "SELECT format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass), \
                    format('trigger %s on %s', t.tgname, t.tgrelid::regclass) \
             FROM pg_trigger t WHERE NOT t.tgisinternal AND t.tgname = '_tern_capture' \
             UNION ALL \
             SELECT format('DROP FUNCTION %s', p.oid::regprocedure), format('function %s', p.oid::regprocedure) \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.proname LIKE '\\_tern\\_capture\\_%' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             UNION ALL \
             SELECT format('DROP TABLE %s', c.oid::regclass), format('table %s', c.oid::regclass) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND c.relname IN ('_tern_changelog', '_tern_capture') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        }
        // Only this database's triggers: other databases on the same server
        // may have their own capture.
        Dialect::MySql => {
            "SELECT CONCAT('DROP TRIGGER `', TRIGGER_SCHEMA, '`.`', TRIGGER_NAME, '`'), \
                    CONCAT('trigger ', TRIGGER_NAME, ' on ', EVENT_OBJECT_TABLE) \
             FROM information_schema.TRIGGERS \
             WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE '\\_tern\\_capture\\_%' \
             UNION ALL \
             SELECT CONCAT('DROP TABLE `', TABLE_SCHEMA, '`.`', TABLE_NAME, '`'), CONCAT('table ', TABLE_NAME) \
             FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('_tern_changelog', '_tern_capture')"
        }
        Dialect::Sqlite => {
            "SELECT 'DROP TRIGGER \"' || name || '\"', 'trigger ' || name || ' on ' || tbl_name \
             FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_tern\\_capture\\_%' ESCAPE '\\' \
             UNION ALL \
             SELECT 'DROP TABLE \"' || name || '\"', 'table ' || name \
             FROM sqlite_master WHERE type = 'table' \
               AND name IN ('_tern_changelog', '_tern_capture', '_tern_origin')"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> CapturedTable {
        CapturedTable {
            table: "items".into(),
            columns: vec!["id".into(), "member_id".into()],
        }
    }

    #[test]
    fn mysql_triggers_log_old_and_new_images() {
        let sql = install_table(
            Dialect::MySql,
            &items(),
            "`db`.`_tern_changelog`",
            "db",
            true,
        );
        assert_eq!(sql.len(), 3);
        assert_eq!(
            sql[1],
            "CREATE OR REPLACE TRIGGER `_tern_capture_items_u` AFTER UPDATE ON `items` FOR EACH ROW \
             IF @tern_origin IS NULL THEN \
             INSERT INTO `db`.`_tern_changelog` (table_name, op, old_row, new_row, changed_at) VALUES \
             ('items', 'U', JSON_OBJECT('id', OLD.`id`, 'member_id', OLD.`member_id`), \
             JSON_OBJECT('id', NEW.`id`, 'member_id', NEW.`member_id`), \
             CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)); END IF"
        );
    }

    #[test]
    fn postgres_uses_one_security_definer_function_per_table() {
        let sql = install_table(
            Dialect::Postgres,
            &items(),
            "\"public\".\"_tern_changelog\"",
            "public",
            true,
        );
        assert_eq!(sql.len(), 2);
        assert!(sql[0].starts_with(
            "CREATE OR REPLACE FUNCTION \"public\".\"_tern_capture_items\"() RETURNS trigger"
        ));
        assert!(sql[0].contains("SECURITY DEFINER"));
        assert!(sql[0].contains(
            "VALUES ('items', 'D', json_build_object('id', OLD.\"id\", 'member_id', OLD.\"member_id\")::text, NULL,"
        ));
        assert!(sql[1].ends_with("EXECUTE FUNCTION \"public\".\"_tern_capture_items\"()"));
        // Tern's own writes (origin mark set) are not logged.
        assert!(sql[0].contains(
            "IF NOT (coalesce(current_setting('tern.origin', true), '') = '') THEN\n    RETURN NULL;"
        ));
    }

    #[test]
    fn sqlite_triggers_skip_writes_carrying_the_origin_mark() {
        let sql = install_table(
            Dialect::Sqlite,
            &items(),
            "\"_tern_changelog\"",
            "main",
            true,
        );
        assert_eq!(sql.len(), 6);
        assert!(
            sql[1].contains(
                "AFTER INSERT ON \"items\" FOR EACH ROW WHEN NOT EXISTS (SELECT 1 FROM \"_tern_origin\")"
            ),
            "{}",
            sql[1]
        );
        assert!(create_tables(Dialect::Sqlite, None)[2].contains("\"_tern_origin\""));
    }
}
