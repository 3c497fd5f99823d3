//! Pacemaker's remote message framing (shared by Pacemaker Remote on 3121 and the remote CIB port).
