#include "scimsync/daemon/app.h"

int main(int argc, char** argv) { return scimsync::daemon::Main(argc, argv); }
