use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub file_name: String,
    pub content_type: String,
    pub audio_blob_id: Option<String>,
    pub audio_size: i64,
    /// The JobSettings the job was submitted with, as JSON.
    pub settings: String,
    /// not_queued | pending_runner | runner_assigned | runner_in_progress |
    /// aborting | success | failed | downloaded
    pub step: String,
    pub progress: f64,
    pub abort_requested: bool,
    pub error_msg: Option<String>,
    pub transcript_blob_id: Option<String>,
    pub runner_id: Option<i64>,
    pub runner_name: Option<String>,
    pub runner_version: Option<String>,
    pub runner_git_hash: Option<String>,
    pub runner_source_code_url: Option<String>,
    pub creation_timestamp: DateTimeUtc,
    pub finish_timestamp: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    User,
    #[sea_orm(
        belongs_to = "super::runners::Entity",
        from = "Column::RunnerId",
        to = "super::runners::Column::Id",
        on_delete = "SetNull"
    )]
    Runner,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::runners::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Runner.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
