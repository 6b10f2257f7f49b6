//! Authentication: who sends a request. Bearer tokens the sandbox issued name a user and its
//! groups (`Sandbox::client_as`) or a ServiceAccount (`Sandbox::service_account_client`); a
//! request without credentials comes from the cluster creator (`system:masters`). Admin callers
//! (and callers granted the `impersonate` verb) may act as another user with the
//! `Impersonate-User` / `Impersonate-Group` headers, as `kubectl --as` sends them.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;

use super::rbac::{self, Attributes};
use super::status::ApiError;
use super::store::Store;

pub const MASTERS: &str = "system:masters";
pub const AUTHENTICATED: &str = "system:authenticated";
/// The name of the user a credential-less request (the admin kubeconfig) acts as.
pub const ADMIN_USER: &str = "kubernetes-admin";
const SA_PREFIX: &str = "system:serviceaccount:";

/// An authenticated identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn admin() -> UserInfo {
        UserInfo {
            name: ADMIN_USER.into(),
            groups: vec![MASTERS.into(), AUTHENTICATED.into()],
        }
    }

    /// A user with the given groups plus `system:authenticated`, as every authenticator adds.
    pub fn new(name: &str, groups: &[&str]) -> UserInfo {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.into());
        }
        UserInfo {
            name: name.into(),
            groups,
        }
    }

    /// `system:serviceaccount:<ns>:<name>` with its groups.
    pub fn service_account(namespace: &str, name: &str) -> UserInfo {
        let ns_group = format!("system:serviceaccounts:{namespace}");
        UserInfo::new(
            &format!("{SA_PREFIX}{namespace}:{name}"),
            &["system:serviceaccounts", &ns_group],
        )
    }

    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }

    /// (namespace, name) when this user is a ServiceAccount.
    pub fn service_account_of(&self) -> Option<(&str, &str)> {
        self.name.strip_prefix(SA_PREFIX)?.split_once(':')
    }
}

/// The bearer tokens the sandbox issued, and the denials it answered.
#[derive(Default)]
pub struct Auth {
    tokens: Mutex<HashMap<String, UserInfo>>,
    denials: Mutex<Vec<String>>,
}

impl Auth {
    /// A new token for `user`.
    pub fn issue(&self, user: UserInfo) -> String {
        let token = format!("sandbox-{}", uuid::Uuid::new_v4().simple());
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), user);
        token
    }

    fn lookup(&self, token: &str) -> Option<UserInfo> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// [`rbac::check`], remembering each denial's message.
    pub fn check(&self, st: &Store, user: &UserInfo, a: &Attributes) -> Result<(), ApiError> {
        rbac::check(st, user, a).inspect_err(|e| {
            self.denials
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(e.message.clone())
        })
    }

    /// The message of every 403 Forbidden answered so far.
    pub fn denials(&self) -> Vec<String> {
        self.denials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The user a request acts as: its credentials, then impersonation.
    pub fn identify(&self, st: &Store, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
        let user = self.authenticate(st, headers)?;
        self.impersonate(st, user, headers)
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

impl Auth {
    fn authenticate(&self, st: &Store, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(UserInfo::admin());
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(unauthorized)?;
        let user = self.lookup(token).ok_or_else(unauthorized)?;
        // A ServiceAccount token is only good while its ServiceAccount exists.
        if let Some((ns, name)) = user.service_account_of() {
            if st.get("/serviceaccounts", ns, name).is_none() {
                return Err(unauthorized());
            }
        }
        Ok(user)
    }

    fn impersonate(
        &self,
        st: &Store,
        user: UserInfo,
        headers: &HeaderMap,
    ) -> Result<UserInfo, ApiError> {
        let as_user = headers
            .get("impersonate-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let as_groups: Vec<String> = headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let Some(as_user) = as_user else {
            if as_groups.is_empty() {
                return Ok(user);
            }
            return Err(ApiError::internal(format!(
                "requested {as_groups:?} without impersonating a user"
            )));
        };
        let target = match UserInfo::new(&as_user, &[]).service_account_of() {
            Some((ns, name)) => {
                Attributes::resource("impersonate", "", "serviceaccounts", ns, name)
            }
            None => Attributes::resource("impersonate", "", "users", "", &as_user),
        };
        self.check(st, &user, &target)?;
        for g in &as_groups {
            self.check(
                st,
                &user,
                &Attributes::resource("impersonate", "", "groups", "", g),
            )?;
        }
        let impersonated = if as_groups.is_empty() {
            match UserInfo::new(&as_user, &[]).service_account_of() {
                Some((ns, name)) => UserInfo::service_account(ns, name),
                None => UserInfo::new(&as_user, &[]),
            }
        } else {
            let groups: Vec<&str> = as_groups.iter().map(String::as_str).collect();
            UserInfo::new(&as_user, &groups)
        };
        Ok(impersonated)
    }
}
