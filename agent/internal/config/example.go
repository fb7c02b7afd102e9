package config

import _ "embed"

// Example is a commented configuration with every key at its default value.
//
//go:embed example.toml
var Example []byte
