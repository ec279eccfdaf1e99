use sea_orm::entity::prelude::*;

/// Which of a user's stored job settings is their default; no row means the
/// application defaults. Keyed by the user, so there is never more than one.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "default_job_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
    pub job_settings_id: i64,
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
        belongs_to = "super::job_settings::Entity",
        from = "Column::JobSettingsId",
        to = "super::job_settings::Column::Id",
        on_delete = "Cascade"
    )]
    JobSettings,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::job_settings::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::JobSettings.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
