//! The queries both SQL stores run, written once. [`sql_swap_store!`] expands, inside the
//! SQLite and the PostgreSQL module, to the store's [`crate::SwapStore`] implementation and its
//! row reader; what differs between the two databases is passed in: how a query numbers its
//! parameters (`?` as written, or PostgreSQL's `$1, $2, …`), and how a boolean column is
//! written and read (SQLite keeps integers). Each module provides the imports the body uses.

/// PostgreSQL's placeholders: every `?` of `sql` becomes `$1`, `$2`, … in order (the queries
/// here have no `?` inside string literals).
pub(crate) fn numbered(sql: &str) -> String {
    let mut n = 0;
    let mut out = String::with_capacity(sql.len() + 8);
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// SQLite's placeholders: the query as written.
pub(crate) fn as_written(sql: &str) -> String {
    sql.to_string()
}

/// `sql_swap_store!(Store, RowType, placeholders_fn, bool_to_db_fn, bool_from_db_fn)`.
macro_rules! sql_swap_store {
    ($store:ty, $row:ty, $q:path, $bool_in:path, $bool_out:path) => {
        const COLUMNS: &str = "id, kind, state_name, terminal, state, version, created_at, updated_at";

        fn row_to_record(r: &$row) -> Result<SwapRecord, StoreError> {
            let id: String = r.try_get("id").map_err(db_err)?;
            let kind: String = r.try_get("kind").map_err(db_err)?;
            let state: String = r.try_get("state").map_err(db_err)?;
            record(
                &id,
                &kind,
                r.try_get("state_name").map_err(db_err)?,
                $bool_out(r.try_get("terminal").map_err(db_err)?),
                &state,
                r.try_get("version").map_err(db_err)?,
                r.try_get("created_at").map_err(db_err)?,
                r.try_get("updated_at").map_err(db_err)?,
            )
        }

        #[async_trait]
        impl SwapStore for $store {
            async fn create(&self, swap: &NewSwap) -> Result<SwapRecord, StoreError> {
                let id = swap.id.to_string();
                let t = now();
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                let inserted = sqlx::query(&$q("INSERT INTO swaps (id, kind, state_name, terminal, state, version, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, 1, ?, ?)"),
                )
                .bind(&id)
                .bind(swap.kind.as_str())
                .bind(&swap.state_name)
                .bind($bool_in(swap.terminal))
                .bind(swap.state.to_string())
                .bind(t)
                .bind(t)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(e) if is_unique_violation(&e) => return Err(StoreError::Duplicate(swap.id)),
                    Err(e) => return Err(db_err(e)),
                    Ok(_) => {}
                }
                sqlx::query(&$q("INSERT INTO swap_events (swap_id, seq, event, at) VALUES (?, 1, ?, ?)"))
                    .bind(&id)
                    .bind(swap.event.to_string())
                    .bind(t)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(SwapRecord {
                    id: swap.id,
                    kind: swap.kind,
                    state_name: swap.state_name.clone(),
                    terminal: swap.terminal,
                    state: swap.state.clone(),
                    version: 1,
                    created_at: t,
                    updated_at: t,
                })
            }

            async fn get(&self, id: &SwapId) -> Result<Option<SwapRecord>, StoreError> {
                let row = sqlx::query(&$q(&format!("SELECT {COLUMNS} FROM swaps WHERE id = ?")))
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.as_ref().map(row_to_record).transpose()
            }

            async fn transition(
                &self,
                id: &SwapId,
                expected_version: i64,
                update: &StateUpdate,
            ) -> Result<SwapRecord, StoreError> {
                let key = id.to_string();
                let t = now();
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                let done = sqlx::query(&$q("UPDATE swaps SET state_name = ?, terminal = ?, state = ?, version = version + 1, updated_at = ? \
                     WHERE id = ? AND version = ?"),
                )
                .bind(&update.state_name)
                .bind($bool_in(update.terminal))
                .bind(update.state.to_string())
                .bind(t)
                .bind(&key)
                .bind(expected_version)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                if done.rows_affected() == 0 {
                    let actual: Option<i64> = sqlx::query_scalar(&$q("SELECT version FROM swaps WHERE id = ?"))
                        .bind(&key)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    return Err(match actual {
                        None => StoreError::NotFound(*id),
                        Some(actual) => StoreError::Conflict {
                            id: *id,
                            expected: expected_version,
                            actual,
                        },
                    });
                }
                sqlx::query(&$q("INSERT INTO swap_events (swap_id, seq, event, at) VALUES (?, ?, ?, ?)"))
                    .bind(&key)
                    .bind(expected_version + 1)
                    .bind(update.event.to_string())
                    .bind(t)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                let row = sqlx::query(&$q(&format!("SELECT {COLUMNS} FROM swaps WHERE id = ?")))
                    .bind(&key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                row_to_record(&row)
            }

            async fn events(&self, id: &SwapId) -> Result<Vec<EventRecord>, StoreError> {
                let rows = sqlx::query(&$q("SELECT seq, event, at FROM swap_events WHERE swap_id = ? ORDER BY seq"))
                    .bind(id.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter()
                    .map(|r| {
                        let event: String = r.try_get("event").map_err(db_err)?;
                        Ok(EventRecord {
                            seq: r.try_get("seq").map_err(db_err)?,
                            event: serde_json::from_str(&event)
                                .map_err(|_| StoreError::Corrupt(format!("event of swap {id} is not JSON")))?,
                            at: r.try_get("at").map_err(db_err)?,
                        })
                    })
                    .collect()
            }

            async fn list(&self, filter: ListFilter) -> Result<Vec<SwapRecord>, StoreError> {
                let sql = match filter {
                    ListFilter::All => format!("SELECT {COLUMNS} FROM swaps ORDER BY created_at, id"),
                    ListFilter::Active => format!("SELECT {COLUMNS} FROM swaps WHERE NOT terminal ORDER BY created_at, id"),
                };
                let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(row_to_record).collect()
            }

            async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
                sqlx::query_scalar(&$q("SELECT value FROM meta WHERE key = ?"))
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)
            }

            async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
                sqlx::query(&$q("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
                )
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
                Ok(())
            }
        }
    };
}

pub(crate) use sql_swap_store;

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            super::numbered("UPDATE t SET a = ?, b = ? WHERE id = ? AND v = ?"),
            "UPDATE t SET a = $1, b = $2 WHERE id = $3 AND v = $4"
        );
        assert_eq!(super::numbered("SELECT 1"), "SELECT 1");
    }
}
