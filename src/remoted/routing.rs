//! What handling a message leads to, and where each part of it goes.
//!
//! Request handlers (`requests`) reach no subsystem but the executor and the client
//! registry: they return an [`Outcome`] (the reply, the notify for every client, and an
//! [`Effect`] on another subsystem). The session and the local IPC driver hand it to
//! [`Routes::deliver`], the one place where those parts are sent on.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use super::cib_gateway::GatewaySessions;
use super::clients::Clients;
use super::shutdown::Control;
use crate::wire::Element;

/// What handling one message produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// For the sender only.
    pub reply: Option<Element>,
    /// For every named client, after the reply.
    pub notify: Option<Element>,
    pub effect: Option<Effect>,
}

/// Work for a subsystem other than the executor.
#[derive(Debug)]
pub enum Effect {
    /// For the main loop's shutdown state machine (ack, nack, fatal, a client gone).
    Control(Control),
    /// For the local IPC driver.
    Local(ToLocal),
    /// Proxy traffic for a CIB gateway client (`ToLocal::FromCluster` with a gateway session).
    Gateway(ToLocal),
}

/// Work for the local IPC driver, which lives in the main task (libqb is single-threaded).
#[derive(Debug)]
pub enum ToLocal {
    /// An `ipc_fwd` event, response or destroy from cluster connection `provider`.
    FromCluster { provider: String, msg: Element },
    /// A cluster connection ended: its proxied local clients must go too.
    ProviderGone { provider: String },
}

/// The ways out of a session or the local IPC driver. Cheap to clone: one per session.
#[derive(Clone)]
pub struct Routes {
    clients: Arc<Clients>,
    control: UnboundedSender<Control>,
    local: UnboundedSender<ToLocal>,
    gateway: Arc<GatewaySessions>,
}

impl Routes {
    pub fn new(
        clients: Arc<Clients>,
        control: UnboundedSender<Control>,
        local: UnboundedSender<ToLocal>,
        gateway: Arc<GatewaySessions>,
    ) -> Routes {
        Routes {
            clients,
            control,
            local,
            gateway,
        }
    }

    /// Sends an outcome on: the effect, then the reply through `reply_to`, then the notify to
    /// every named client (so the sender sees its reply before the notify). Effects go first as
    /// they did when handlers told the subsystems themselves.
    pub fn deliver(&self, outcome: Outcome, reply_to: impl FnOnce(Element)) {
        if let Some(effect) = outcome.effect {
            self.apply(effect);
        }
        if let Some(reply) = outcome.reply {
            reply_to(reply);
        }
        if let Some(notify) = outcome.notify {
            self.clients.broadcast(&notify);
        }
    }

    /// A subsystem that has gone (the daemon is exiting) no longer needs telling.
    pub fn apply(&self, effect: Effect) {
        match effect {
            Effect::Control(c) => {
                let _ = self.control.send(c);
            }
            Effect::Local(l) => {
                if let ToLocal::ProviderGone { provider } = &l {
                    self.gateway.provider_gone(provider);
                }
                let _ = self.local.send(l);
            }
            Effect::Gateway(ToLocal::FromCluster { provider, msg }) => {
                self.gateway.from_cluster(&self.clients, &provider, msg);
            }
            Effect::Gateway(ToLocal::ProviderGone { provider }) => {
                self.gateway.provider_gone(&provider);
            }
        }
    }
}
