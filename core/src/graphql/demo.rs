//! The demo schemas: what `terminus demo` serves.

/// The demo schema (`core/schemas/demo.graphql`): the embedded demo gRPC
/// upstream, named `demo`.
pub const SCHEMA_SDL: &str = include_str!("../../schemas/demo.graphql");

/// The demo schema plus MySQL-backed fields (`core/schemas/demo_mysql.graphql`
/// appended to `demo.graphql`): the database named `main`, table
/// `terminus_demo_messages`.
pub const SCHEMA_WITH_MYSQL_SDL: &str = concat!(
    include_str!("../../schemas/demo.graphql"),
    "\n",
    include_str!("../../schemas/demo_mysql.graphql")
);

/// The file name to report in errors about [`SCHEMA_SDL`].
pub const SCHEMA_FILE: &str = "core/schemas/demo.graphql";

/// The SQL that creates the table the MySQL demo fields use.
pub const MYSQL_TABLE_DDL: &str = "CREATE TABLE IF NOT EXISTS terminus_demo_messages (\
id BIGINT AUTO_INCREMENT PRIMARY KEY, text VARCHAR(500) NOT NULL, \
created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, \
author_id BIGINT NOT NULL DEFAULT 1)";

/// The rest of the demo's setup, run after [`MYSQL_TABLE_DDL`]: the authors
/// table (the `Message.author` relation) with its `guest`, and the
/// `author_id` column on a messages table made before it existed (MariaDB
/// syntax; on MySQL the statement fails and the table already has it).
pub const MYSQL_SETUP: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS terminus_demo_authors (\
id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL UNIQUE)",
    "INSERT IGNORE INTO terminus_demo_authors (id, name) VALUES (1, 'guest')",
    "ALTER TABLE terminus_demo_messages ADD COLUMN IF NOT EXISTS author_id BIGINT NOT NULL DEFAULT 1",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::Schema;

    #[test]
    fn demo_schemas_load() {
        let s = Schema::parse(SCHEMA_SDL, SCHEMA_FILE).unwrap();
        assert_eq!(
            s.upstream_names().grpc.into_iter().collect::<Vec<_>>(),
            vec!["demo"]
        );
        assert!(s.upstream_names().sql.is_empty());
        let m = Schema::parse(SCHEMA_WITH_MYSQL_SDL, "demo_mysql.graphql").unwrap();
        assert_eq!(
            m.upstream_names().sql.into_iter().collect::<Vec<_>>(),
            vec!["main"]
        );
    }
}
