//! The reasons a Channel's `Ready` condition gives: one type shared by the controller (which
//! writes them), the providers (whose errors map to them) and the HTTP API (which reads them).
//! Each reason also decides the kstatus conditions that go with it ([`Reason::state`]).

use std::fmt;

/// Why a Channel is, or is not, `Ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Connected at the provider, as desired.
    Connected,
    /// Disconnected at the provider, as desired.
    Disconnected,
    /// A change is being carried out (a disconnect recorded before the next step).
    Progressing,
    /// The provider call failed (HTTP error, timeout, rate limit); retried with backoff.
    ProviderError,
    /// The provider rejected the credentials.
    InvalidCredentials,
    /// The credentials Secret is missing, lacks its key or does not consent to be used (label
    /// `airy.co/credentials: "true"`; one message for all three), or the operator's provider
    /// configuration is missing.
    CredentialsMissing,
    /// An older Channel has the same source and source channel id.
    Duplicate,
    /// The spec breaks a rule of the CRD.
    InvalidSpec,
    /// A Secret the operator would write exists and is not this Channel's; it is left alone.
    SecretConflict,
    /// A Kubernetes API call of the reconcile failed; retried with backoff.
    KubeError,
    /// No provider configuration admits the Channel's namespace, or the one it names is missing
    /// or unusable (its Secrets); no provider is called.
    ProviderConfigMissing,
}

impl Reason {
    /// Every reason, in a stable order.
    pub const ALL: [Reason; 11] = [
        Reason::Connected,
        Reason::Disconnected,
        Reason::Progressing,
        Reason::ProviderError,
        Reason::InvalidCredentials,
        Reason::CredentialsMissing,
        Reason::Duplicate,
        Reason::InvalidSpec,
        Reason::SecretConflict,
        Reason::KubeError,
        Reason::ProviderConfigMissing,
    ];

    /// The string written to the condition's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Connected => "Connected",
            Reason::Disconnected => "Disconnected",
            Reason::Progressing => "Progressing",
            Reason::ProviderError => "ProviderError",
            Reason::InvalidCredentials => "InvalidCredentials",
            Reason::CredentialsMissing => "CredentialsMissing",
            Reason::Duplicate => "Duplicate",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::SecretConflict => "SecretConflict",
            Reason::KubeError => "KubeError",
            Reason::ProviderConfigMissing => "ProviderConfigMissing",
        }
    }

    /// Where a Channel with this reason stands, in kstatus's terms.
    pub fn state(self) -> State {
        match self {
            Reason::Connected | Reason::Disconnected => State::Ready,
            Reason::Progressing | Reason::ProviderError | Reason::KubeError => State::Reconciling,
            Reason::InvalidCredentials
            | Reason::CredentialsMissing
            | Reason::Duplicate
            | Reason::InvalidSpec
            | Reason::SecretConflict
            | Reason::ProviderConfigMissing => State::Stalled,
        }
    }

    /// Parses a condition's `reason`; `None` for a reason this version does not write.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The three states a reason puts a Channel in; each is reported by one condition that is `True`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The desired state holds: `Ready=True`.
    Ready,
    /// A change is in progress or being retried after a transient failure: `Reconciling=True`.
    Reconciling,
    /// Retrying cannot fix it; the spec, the credentials or the cluster must change:
    /// `Stalled=True`.
    Stalled,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<Reason> for &str {
    fn eq(&self, other: &Reason) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Reason> for String {
    fn eq(&self, other: &Reason) -> bool {
        self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips() {
        // The strings users, kstatus readers and docs/channel.md's table know, pinned: renaming one
        // breaks every alert and script that reads it.
        let documented = [
            "Connected",
            "Disconnected",
            "Progressing",
            "ProviderError",
            "KubeError",
            "InvalidCredentials",
            "CredentialsMissing",
            "Duplicate",
            "InvalidSpec",
            "SecretConflict",
            "ProviderConfigMissing",
        ];
        assert_eq!(Reason::ALL.len(), documented.len());
        for s in documented {
            let r = Reason::parse(s).unwrap_or_else(|| panic!("{s} is no Reason"));
            assert_eq!(r.as_str(), s);
            assert_eq!(r.to_string(), s);
            assert!(s == r);
        }
        assert_eq!(Reason::parse("Other"), None);
        assert_eq!(Reason::parse("connected"), None, "exact case");
    }

    #[test]
    fn failures_retrying_cannot_fix_are_stalled() {
        let stalled: Vec<Reason> = Reason::ALL
            .into_iter()
            .filter(|r| r.state() == State::Stalled)
            .collect();
        assert_eq!(
            stalled,
            [
                Reason::InvalidCredentials,
                Reason::CredentialsMissing,
                Reason::Duplicate,
                Reason::InvalidSpec,
                Reason::SecretConflict,
                Reason::ProviderConfigMissing
            ]
        );
        assert_eq!(Reason::ProviderError.state(), State::Reconciling);
        assert_eq!(Reason::Disconnected.state(), State::Ready);
    }
}
