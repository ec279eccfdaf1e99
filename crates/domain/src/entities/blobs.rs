use sea_orm::entity::prelude::*;

/// The catalogue of stored blobs (audio, transcripts), whatever backend holds
/// their data. A row is written before the first byte and marked complete at
/// the end, so unfinished writes can be found and purged.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Plaintext bytes; final once `complete`.
    pub size: i64,
    /// Fully written and readable. False while writing, and while deleting.
    pub complete: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::blob_chunks::Entity")]
    Chunks,
}

impl Related<super::blob_chunks::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Chunks.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
