//! PostgreSQL catalog fingerprint from `pg_catalog`: user schemas only (not `pg_catalog`,
//! `information_schema`, `pg_toast*`, `pg_temp*`), no extension members, no migration history
//! table. Columns are ranked among live columns (`attisdropped` slots do not count), sequences
//! carry their parameters but never `last_value`, enum labels come in `enumsortorder`. One query,
//! one round trip.

use sqlx::{PgConnection, Row};

use super::{CatalogRow, Fingerprint, HISTORY_TABLES};
use crate::model::Engine;

const CATALOG_SQL: &str = r#"
WITH ns AS (
  SELECT n.oid, n.nspname FROM pg_namespace n
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
),
rel AS (
  SELECT c.oid, c.relname, c.relkind, c.relpersistence, c.relpartbound, c.relrowsecurity,
         c.relforcerowsecurity, ns.nspname, ns.nspname || '.' || c.relname AS ident
  FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
  WHERE c.relname <> ALL ($1::text[])
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
)
SELECT 'schema'::text, ns.nspname::text, NULL::text, ARRAY[]::text[], ARRAY[]::text[] FROM ns
UNION ALL
SELECT 'extension', e.extname::text, NULL, ARRAY['version', 'schema'], ARRAY[e.extversion, n.nspname::text]
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
UNION ALL
SELECT CASE r.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                      WHEN 'f' THEN 'foreign table' ELSE 'table' END,
       r.ident, NULL,
       ARRAY['relkind', 'persistence', 'inherits', 'partition_key', 'partition_bound', 'rls', 'force_rls', 'def'],
       ARRAY[r.relkind::text, r.relpersistence::text,
             COALESCE((SELECT string_agg(p.nspname || '.' || p.relname, ', ' ORDER BY i.inhseqno)
                       FROM pg_inherits i JOIN rel p ON p.oid = i.inhparent WHERE i.inhrelid = r.oid), ''),
             CASE WHEN r.relkind = 'p' THEN pg_get_partkeydef(r.oid) ELSE '' END,
             COALESCE(pg_get_expr(r.relpartbound, r.oid), ''),
             r.relrowsecurity::text, r.relforcerowsecurity::text,
             CASE WHEN r.relkind IN ('v', 'm') THEN pg_get_viewdef(r.oid, true) ELSE '' END]
FROM rel r WHERE r.relkind IN ('r', 'p', 'f', 'v', 'm')
UNION ALL
SELECT 'column', r.ident || '.' || a.attname, r.ident,
       ARRAY['pos', 'type', 'notnull', 'default', 'identity', 'generated', 'collation'],
       ARRAY[(row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum))::text,
             format_type(a.atttypid, a.atttypmod), a.attnotnull::text,
             COALESCE(pg_get_expr(ad.adbin, ad.adrelid), ''),
             a.attidentity::text, a.attgenerated::text,
             CASE WHEN a.attcollation <> t.typcollation THEN COALESCE(co.collname::text, '') ELSE '' END]
FROM pg_attribute a
JOIN rel r ON r.oid = a.attrelid
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p', 'f', 'c')
UNION ALL
SELECT 'constraint', r.ident || '.' || con.conname, r.ident,
       ARRAY['def'], ARRAY[pg_get_constraintdef(con.oid, true)]
FROM pg_constraint con JOIN rel r ON r.oid = con.conrelid
UNION ALL
SELECT 'constraint', ns.nspname || '.' || t.typname || '.' || con.conname, ns.nspname || '.' || t.typname,
       ARRAY['def'], ARRAY[pg_get_constraintdef(con.oid, true)]
FROM pg_constraint con JOIN pg_type t ON t.oid = con.contypid JOIN ns ON ns.oid = t.typnamespace
UNION ALL
SELECT 'index', r.nspname || '.' || ic.relname, r.ident,
       ARRAY['unique', 'def', 'valid'],
       ARRAY[i.indisunique::text, pg_get_indexdef(i.indexrelid), i.indisvalid::text]
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN rel r ON r.oid = i.indrelid
WHERE NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid
                  AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x'))
UNION ALL
SELECT 'sequence', r.ident, NULL,
       ARRAY['type', 'start', 'inc', 'min', 'max', 'cache', 'cycle', 'owned_by'],
       ARRAY[format_type(s.seqtypid, NULL), s.seqstart::text, s.seqincrement::text, s.seqmin::text,
             s.seqmax::text, s.seqcache::text, s.seqcycle::text,
             COALESCE((SELECT o.ident || '.' || oa.attname FROM pg_depend d
                       JOIN rel o ON o.oid = d.refobjid
                       JOIN pg_attribute oa ON oa.attrelid = d.refobjid AND oa.attnum = d.refobjsubid
                       WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid
                         AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1), '')]
FROM pg_sequence s JOIN rel r ON r.oid = s.seqrelid
UNION ALL
SELECT 'type', ns.nspname || '.' || t.typname, NULL,
       ARRAY['kind', 'def'],
       ARRAY[CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' WHEN 'r' THEN 'range' ELSE 'composite' END,
             CASE t.typtype
               WHEN 'e' THEN COALESCE((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                       FROM pg_enum e WHERE e.enumtypid = t.oid), '')
               WHEN 'd' THEN format_type(t.typbasetype, t.typtypmod)
                             || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                             || COALESCE(' DEFAULT ' || t.typdefault, '')
               WHEN 'r' THEN COALESCE((SELECT format_type(rg.rngsubtype, NULL) FROM pg_range rg
                                       WHERE rg.rngtypid = t.oid), '')
               ELSE '' END]
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
WHERE (t.typtype IN ('e', 'd', 'r')
       OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class tc WHERE tc.oid = t.typrelid AND tc.relkind = 'c')))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                  AND d.objid = t.oid AND d.deptype = 'e')
UNION ALL
SELECT CASE p.prokind WHEN 'a' THEN 'aggregate' WHEN 'p' THEN 'procedure' ELSE 'function' END,
       ns.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', NULL,
       ARRAY['def'],
       ARRAY[CASE WHEN p.prokind = 'a' THEN
               COALESCE((SELECT 'sfunc=' || ag.aggtransfn::regproc::text || ' stype=' || format_type(ag.aggtranstype, NULL)
                                || ' finalfunc=' || ag.aggfinalfn::regproc::text || ' initcond=' || COALESCE(ag.agginitval, '')
                         FROM pg_aggregate ag WHERE ag.aggfnoid = p.oid), '')
             ELSE pg_get_functiondef(p.oid) END]
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT 'trigger', r.ident || '.' || tg.tgname, r.ident,
       ARRAY['def', 'enabled'], ARRAY[pg_get_triggerdef(tg.oid, true), tg.tgenabled::text]
FROM pg_trigger tg JOIN rel r ON r.oid = tg.tgrelid
WHERE NOT tg.tgisinternal
UNION ALL
SELECT 'event trigger', e.evtname::text, NULL,
       ARRAY['event', 'function', 'enabled', 'tags'],
       ARRAY[e.evtevent::text, e.evtfoid::regproc::text, e.evtenabled::text, COALESCE(array_to_string(e.evttags, ', '), '')]
FROM pg_event_trigger e
UNION ALL
SELECT 'policy', r.ident || '.' || pol.polname, r.ident,
       ARRAY['permissive', 'cmd', 'roles', 'using', 'check'],
       ARRAY[pol.polpermissive::text, pol.polcmd::text,
             COALESCE((SELECT string_agg(CASE WHEN ro = 0 THEN 'public' ELSE ro::regrole::text END, ', ' ORDER BY 1)
                       FROM unnest(pol.polroles) ro), ''),
             COALESCE(pg_get_expr(pol.polqual, pol.polrelid), ''),
             COALESCE(pg_get_expr(pol.polwithcheck, pol.polrelid), '')]
FROM pg_policy pol JOIN rel r ON r.oid = pol.polrelid
UNION ALL
SELECT 'rule', r.ident || '.' || rw.rulename, r.ident, ARRAY['def'], ARRAY[pg_get_ruledef(rw.oid, true)]
FROM pg_rewrite rw JOIN rel r ON r.oid = rw.ev_class
WHERE rw.rulename <> '_RETURN'
"#;

/// Reads the fingerprint of the database `conn` is connected to.
pub async fn fingerprint(conn: &mut PgConnection) -> Result<Fingerprint, sqlx::Error> {
    let history: Vec<String> = HISTORY_TABLES.iter().map(|s| (*s).to_string()).collect();
    let rows = sqlx::query(CATALOG_SQL)
        .bind(history)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let kind: String = r.try_get(0)?;
        let identity: String = r.try_get(1)?;
        let table: Option<String> = r.try_get(2)?;
        let keys: Vec<String> = r.try_get(3)?;
        let values: Vec<Option<String>> = r.try_get(4)?;
        let mut row = CatalogRow::new(&kind, identity);
        for (k, v) in keys.iter().zip(values) {
            row = row.field(k, v.unwrap_or_default());
        }
        if let Some(t) = table {
            row = row.in_table(t);
        }
        out.push(row);
    }
    Ok(Fingerprint::new(Engine::Postgres, out))
}
