use sea_orm::entity::prelude::*;

/// An online runner: exists from `register` until `unregister`, invalidation
/// or 60 s without a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "runner_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub runner_id: i64,
    pub session_token_hash: String,
    pub name: String,
    pub version: String,
    pub git_hash: String,
    pub source_code_url: String,
    pub priority: i64,
    pub registered_at: DateTimeUtc,
    pub last_heartbeat: DateTimeUtc,
    /// The job assigned to this runner (unique across sessions).
    pub job_id: Option<i64>,
    /// The runner fetched the audio (SPEC §3.6: "in progress").
    pub job_in_progress: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::runners::Entity",
        from = "Column::RunnerId",
        to = "super::runners::Column::Id",
        on_delete = "Cascade"
    )]
    Runner,
    #[sea_orm(
        belongs_to = "super::jobs::Entity",
        from = "Column::JobId",
        to = "super::jobs::Column::Id",
        on_delete = "SetNull"
    )]
    Job,
}

impl Related<super::runners::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Runner.def()
    }
}

impl Related<super::jobs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Job.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
