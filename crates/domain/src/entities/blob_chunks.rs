use sea_orm::entity::prelude::*;

/// One sealed chunk of a blob kept by the database backend (see
/// `crate::crypto` for the format). Rows go with their `blobs` row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "blob_chunks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub blob_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub chunk_index: i64,
    #[sea_orm(column_type = "Blob")]
    pub data: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::blobs::Entity",
        from = "Column::BlobId",
        to = "super::blobs::Column::Id",
        on_delete = "Cascade"
    )]
    Blob,
}

impl Related<super::blobs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Blob.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
