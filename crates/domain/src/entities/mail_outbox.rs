use sea_orm::entity::prelude::*;

/// A mail waiting for delivery; deleted once delivered or given up on.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mail_outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// JSON array of addresses.
    pub to_addresses: String,
    /// JSON array of addresses.
    pub bcc_addresses: String,
    pub subject: String,
    pub body: String,
    /// Failed delivery attempts so far.
    pub attempts: i32,
    /// Due from then on; a claiming worker moves it forward as its lease.
    pub next_attempt_at: DateTimeUtc,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
