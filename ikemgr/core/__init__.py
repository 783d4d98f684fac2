"""Pure core: no sockets, files, clock or environment. Everything here is a function of its inputs."""
