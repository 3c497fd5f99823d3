//! [`CibClient`]: what kubemaker asks of a CIB (query, apply one patch, watch), each call one
//! request over the fail-over link.

use std::fmt;

use crate::cib::model::CibVersion;
use crate::wire::Element;

use super::config::ClientConfig;
use super::connection::{Request, reply_parts};
use super::error::{CibError, callopt, rc_message};
use super::failover::Failover;
use super::watch::{self, Watch};

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The whole `<cib>`: configuration, status and version, read atomically.
    All,
    /// One section (`configuration`, `resources`, `nodes`, `status`, …).
    Section(String),
    /// An XPath; several matches come wrapped in `<xpath-query>`.
    XPath(String),
    /// Only the `<cib>` root's attributes: the cheapest way to read the version.
    Version,
}

/// A connection to the CIB of one cluster, over any of its nodes.
pub struct CibClient {
    link: Failover,
}

impl fmt::Debug for CibClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cfg = self.link.config();
        f.debug_struct("CibClient")
            .field("endpoints", &cfg.endpoints)
            .field("user", &cfg.user)
            .finish_non_exhaustive()
    }
}

impl CibClient {
    /// Connects and logs in now, so a wrong password or an unreachable cluster shows at once.
    pub async fn connect(cfg: ClientConfig) -> Result<CibClient, CibError> {
        Ok(CibClient {
            link: Failover::connect(cfg).await?,
        })
    }

    pub fn config(&self) -> &ClientConfig {
        self.link.config()
    }

    /// Sends any CIB operation and returns the whole `<cib-reply>` (for operations this client
    /// has no method for, e.g. `cib_bump`). Subject to the request timeout like every request.
    pub async fn request_raw(
        &self,
        op: &str,
        section: Option<&str>,
        options: u32,
        data: Option<&Element>,
    ) -> Result<Element, CibError> {
        self.link
            .request(
                Request {
                    op,
                    section: section.map(str::to_string),
                    options,
                    data,
                },
                false,
            )
            .await
    }

    /// Reads (part of) the CIB.
    pub async fn query(&self, q: &Query) -> Result<Element, CibError> {
        let (section, options) = match q {
            Query::All => (None, 0),
            Query::Section(s) => (Some(s.clone()), 0),
            Query::XPath(x) => (Some(x.clone()), callopt::XPATH),
            Query::Version => (None, callopt::NO_CHILDREN),
        };
        let reply = self
            .link
            .request(
                Request {
                    op: "cib_query",
                    section,
                    options,
                    data: None,
                },
                true,
            )
            .await?;
        let (rc, data) = reply_parts(&reply);
        if rc != 0 {
            return Err(CibError::Rejected {
                op: "cib_query".into(),
                rc,
                message: rc_message(rc).into(),
            });
        }
        data.cloned()
            .ok_or_else(|| CibError::Protocol("query reply without data".into()))
    }

    /// The whole CIB, read atomically.
    pub async fn query_cib(&self) -> Result<Element, CibError> {
        let cib = self.query(&Query::All).await?;
        if cib.name != "cib" {
            return Err(CibError::Protocol(format!(
                "whole-CIB query returned <{}>",
                cib.name
            )));
        }
        Ok(cib)
    }

    pub async fn version(&self) -> Result<CibVersion, CibError> {
        Ok(CibVersion::from_element(
            &self.query(&Query::Version).await?,
        ))
    }

    /// Sends one patch as is. `Err(Rejected{rc: -205})` when its source version is stale.
    pub async fn apply_patch(&self, patch: &Element, dry_run: bool) -> Result<(), CibError> {
        let reply = self
            .link
            .request(
                Request {
                    op: "cib_apply_diff",
                    section: None,
                    options: if dry_run { callopt::DRYRUN } else { 0 },
                    data: Some(patch),
                },
                false,
            )
            .await?;
        match reply_parts(&reply).0 {
            0 => Ok(()),
            rc => Err(CibError::Rejected {
                op: "cib_apply_diff".into(),
                rc,
                message: rc_message(rc).into(),
            }),
        }
    }

    /// Subscribes to change notifications on a connection of its own.
    pub async fn watch(&self) -> Result<Watch, CibError> {
        watch::start(self.link.config().clone(), self.link.preferred()).await
    }

    /// Ends the session politely (TLS close_notify).
    pub async fn close(self) {
        if let Some(conn) = self.link.into_connection() {
            conn.close().await;
        }
    }
}
