use sea_orm::entity::prelude::*;

/// One stored set of job settings of a user. Rows are never changed: a job keeps
/// pointing at the settings it was submitted with.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_settings")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    /// The complete settings (defaults filled in) as JSON.
    pub settings: String,
    pub created_at: DateTimeUtc,
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
    #[sea_orm(has_many = "super::default_job_settings::Entity")]
    DefaultJobSettings,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::default_job_settings::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::DefaultJobSettings.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
