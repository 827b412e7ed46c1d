// Package registry holds the channel adapters by name.
package registry
