// Package hostilehttp is test support: the HTTP clients of the hostile
// load that the end-to-end tests and the soak's hostile phase throw at
// the agent (concurrent scrapers, clients that never read, slow request
// bodies, the kubelet's probe). Nothing in the agent imports it.
package hostilehttp
