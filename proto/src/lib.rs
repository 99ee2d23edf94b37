//! Protobuf definitions of the Terminus demo and test upstreams.
