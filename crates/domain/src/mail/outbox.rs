//! The `mail_outbox` table: what is waiting, who may send it, and when.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement,
};

use super::OutgoingMail;
use crate::entities::mail_outbox::{ActiveModel, Column, Entity, Model};
use crate::error::{DomainError, DomainResult};

pub(crate) async fn insert(db: &impl ConnectionTrait, mail: &OutgoingMail) -> DomainResult<()> {
    let encode = |addresses: &Vec<String>| {
        serde_json::to_string(addresses)
            .map_err(|err| DomainError::internal("mail: encoding addresses", err))
    };
    let now = Utc::now();
    let row = ActiveModel {
        to_addresses: Set(encode(&mail.to)?),
        bcc_addresses: Set(encode(&mail.bcc)?),
        subject: Set(mail.subject.clone()),
        body: Set(mail.body.clone()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        created_at: Set(now),
        ..Default::default()
    };
    Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}

/// When the earliest row is due (possibly in the past), if there is any.
pub(crate) async fn next_due(db: &impl ConnectionTrait) -> Result<Option<DateTime<Utc>>, DbErr> {
    Entity::find()
        .select_only()
        .column(Column::NextAttemptAt)
        .order_by_asc(Column::NextAttemptAt)
        .into_tuple::<DateTime<Utc>>()
        .one(db)
        .await
}

/// Takes the earliest due row by moving its `next_attempt_at` to `lease_until`
/// in one statement: other workers no longer see it as due, and if this one
/// dies mid-delivery the row becomes due again when the lease runs out.
/// On PostgreSQL `SKIP LOCKED` lets concurrent replicas claim different rows
/// instead of queueing on the same one; SQLite serves a single process.
pub(crate) async fn claim_next(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<Option<Model>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "UPDATE mail_outbox SET next_attempt_at = $1 WHERE id = (\
               SELECT id FROM mail_outbox WHERE next_attempt_at <= $2 \
               ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED\
             ) RETURNING *"
        }
        _ => {
            "UPDATE mail_outbox SET next_attempt_at = ? WHERE id = (\
               SELECT id FROM mail_outbox WHERE next_attempt_at <= ? \
               ORDER BY next_attempt_at, id LIMIT 1\
             ) RETURNING *"
        }
    };
    Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            backend,
            sql,
            [lease_until.into(), now.into()],
        ))
        .one(db)
        .await
}

/// Delivered, or given up on.
pub(crate) async fn remove(db: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    Entity::delete_by_id(id).exec(db).await.map(drop)
}

/// A failed attempt: count it and schedule the next one.
pub(crate) async fn reschedule(
    db: &impl ConnectionTrait,
    id: i64,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    error: &str,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::Attempts, Expr::value(attempts))
        .col_expr(Column::NextAttemptAt, Expr::value(next_attempt_at))
        .col_expr(Column::LastError, Expr::value(error))
        .filter(Column::Id.eq(id))
        .exec(db)
        .await
        .map(drop)
}

/// Gives a claimed row back unattempted (shutdown interrupted its delivery).
pub(crate) async fn release(db: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::NextAttemptAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .exec(db)
        .await
        .map(drop)
}

impl Model {
    pub(crate) fn to_mail(&self) -> Result<OutgoingMail, serde_json::Error> {
        Ok(OutgoingMail {
            to: serde_json::from_str(&self.to_addresses)?,
            bcc: serde_json::from_str(&self.bcc_addresses)?,
            subject: self.subject.clone(),
            body: self.body.clone(),
        })
    }
}
