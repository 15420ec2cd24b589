# Sourced by the scripts: what OpenMPI needs to run as root and to place more ranks than cores.
# Threads per rank default to 1 so that oversubscribed ranks do not fight over the cores.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
