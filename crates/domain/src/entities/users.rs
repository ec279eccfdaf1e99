use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub email: String,
    /// `local`, `ldap` or `oidc`.
    pub user_type: String,
    pub provider_name: String,
    pub external_id: Option<String>,
    pub password_hash: Option<String>,
    pub is_verified: bool,
    pub is_admin: bool,
    pub provision_number: Option<i64>,
    pub activation_generation: i64,
    pub password_reset_generation: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::tokens::Entity")]
    Tokens,
    #[sea_orm(has_many = "super::tos_acceptances::Entity")]
    TosAcceptances,
}

impl Related<super::tokens::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Tokens.def()
    }
}

impl Related<super::tos_acceptances::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TosAcceptances.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
